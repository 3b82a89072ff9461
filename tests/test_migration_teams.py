"""Upgrading a single-person database (revision 0004) to sharing and review keeps its work with its person.

Its histories become ``team`` histories at version 0, still owned by the local user (the
first admin); the first named admin made afterwards adopts them (and the audit log says so);
a second admin adopts nothing. Going back to 0004 and up again works with reviews present.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from core.settings import Settings
from db.migrate import current_revision, downgrade, head_revision, upgrade
from db.models import LOCAL_USER_ID
from jobs.histories import get_history, history_steps, history_version
from jobs.services import Services, reviews
from jobs.services.access import may_read, may_write
from jobs.services.accounts import Accounts, make_password_hasher
from jobs.services.permissions import actor_for, local_actor
from tests.team_support import CHEAP, PASSWORD

HISTORY_ID, ROOT_STEP, EDIT_STEP = 7, 11, 12


@pytest.fixture
def old_services(settings: Settings) -> Iterator[Services]:
    """Services on a database built to revision 0004 only, holding one person's history of two steps."""
    svc = Services.from_settings(settings)
    assert upgrade(svc.database, "0004") == "0004"
    with svc.database.write() as conn:
        conn.execute(sa.text("INSERT INTO images (id, sha256, width, height, format, byte_size, blob_key, created_by, "
                             "created_at) VALUES (1, :a, 4, 4, 'PNG', 10, :a, 1, CURRENT_TIMESTAMP), "
                             "(2, :b, 4, 4, 'PNG', 10, :b, 1, CURRENT_TIMESTAMP)"), {"a": "a" * 64, "b": "b" * 64})
        conn.execute(sa.text("INSERT INTO histories (id, title, owner_id, created_at, updated_at) "
                             "VALUES (:h, 'portrait', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"h": HISTORY_ID})
        conn.execute(sa.text("INSERT INTO steps (id, history_id, parent_id, image_id, commands, params, created_by, "
                             "created_at) VALUES (:root, :h, NULL, 1, '[]', '{}', 1, CURRENT_TIMESTAMP), "
                             "(:edit, :h, :root, 2, '[{\"command\": \"blur\", \"paras\": [[\"Background\"], 0.5]}]', "
                             "'{}', 1, CURRENT_TIMESTAMP)"), {"root": ROOT_STEP, "edit": EDIT_STEP, "h": HISTORY_ID})
    yield svc
    svc.close()


def _accounts(services: Services) -> Accounts:
    return Accounts(services, passwords=make_password_hasher(CHEAP))


def _adoptions(services: Services) -> list[tuple[int | None, str | None]]:
    with services.database.read() as conn:
        rows = conn.execute(sa.text("SELECT actor_id, object_id FROM audit_log WHERE action = 'histories.adopted' "
                                    "ORDER BY id")).all()
    return [tuple(r) for r in rows]


def test_histories_become_team_histories_of_the_local_user_then_the_first_admin_s(old_services: Services) -> None:
    assert upgrade(old_services.database) == head_revision()

    history = get_history(old_services, HISTORY_ID)
    assert (history.owner_id, history.visibility, history.version) == (LOCAL_USER_ID, "team", 0)
    assert [s.id for s in history_steps(old_services, HISTORY_ID)] == [ROOT_STEP, EDIT_STEP]
    assert history_version(old_services, HISTORY_ID).version == 0
    local = local_actor(old_services)
    assert local.role == "admin" and may_write(local, history)

    accounts = _accounts(old_services)
    ada = actor_for(old_services, accounts.create_user(local, "ada", role="admin", display_name="Ada",
                                                       password=PASSWORD).id)
    history = get_history(old_services, HISTORY_ID)
    assert history.owner_id == ada.id and history.visibility == "team"
    assert may_write(ada, history)
    assert _adoptions(old_services) == [(LOCAL_USER_ID, str(ada.id))]
    with old_services.database.read() as conn:
        detail = conn.execute(sa.text("SELECT detail FROM audit_log WHERE action = 'histories.adopted'")).scalar_one()
    detail = detail if isinstance(detail, dict) else json.loads(detail)
    assert detail == {"from": "local", "histories": 1}

    bob = actor_for(old_services, accounts.create_user(ada, "bob", role="admin", password=PASSWORD).id)
    ed = actor_for(old_services, accounts.create_user(ada, "ed", role="editor", password=PASSWORD).id)
    assert get_history(old_services, HISTORY_ID).owner_id == ada.id, "a second admin adopts nothing"
    assert len(_adoptions(old_services)) == 1
    history = get_history(old_services, HISTORY_ID)
    assert may_read(ed, history) and not may_write(ed, history), "the team reads it; only Ada (and admins) change it"
    assert may_write(bob, history)


def test_down_to_0004_and_up_again_with_reviews_present(old_services: Services) -> None:
    upgrade(old_services.database)
    accounts = _accounts(old_services)
    local = local_actor(old_services)
    rita = actor_for(old_services, accounts.create_user(local, "rita", role="reviewer", password=PASSWORD).id)
    reviews.decide(old_services, rita, EDIT_STEP, "approve", comment="good")
    reviews.comment(old_services, rita, EDIT_STEP, "the left edge", x=0.1, y=0.5)
    assert reviews.step_states(old_services, [EDIT_STEP])[EDIT_STEP].state == "approved"

    assert downgrade(old_services.database, "0004") == "0004"
    tables = set(sa.inspect(old_services.database.engine).get_table_names())
    assert not {"step_reviews", "step_comments"} & tables
    with old_services.database.read() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("histories")}
        kept = conn.execute(sa.text("SELECT owner_id, title FROM histories")).all()
        steps = conn.execute(sa.text("SELECT count(*) FROM steps")).scalar_one()
    assert not {"visibility", "version", "changed_by", "changed_at", "change"} & columns
    assert [tuple(k) for k in kept] == [(LOCAL_USER_ID, "portrait")] and steps == 2

    assert upgrade(old_services.database) == head_revision() == current_revision(old_services.database)
    history = get_history(old_services, HISTORY_ID)
    assert (history.owner_id, history.visibility, history.version) == (LOCAL_USER_ID, "team", 0)
    assert reviews.step_states(old_services, [EDIT_STEP])[EDIT_STEP].state == "awaiting", \
        "the reviews went with their tables; the step awaits review again"
    reviews.decide(old_services, rita, EDIT_STEP, "reject")  # the tables (and their guards) are back
    assert reviews.step_states(old_services, [EDIT_STEP])[EDIT_STEP].state == "rejected"
