"""The authorization matrix: every role × every action × own / team / private-of-another object, at the
service door (every submission function included) and on every page of the app.

The expected table is written out below; the test derives nothing from the permission table
it checks. Each cell runs the real door function on a real database (SQLite and PostgreSQL) and
compares allowed/refused with the table: a cell that passes where the table says "-" is a leak.
A new door action, role or page without a row or column here fails the completeness tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.ui.identity import ACTOR_KEY
from app.ui.navigation import PAGE_PERMISSIONS
from db.models import USER_ROLES
from jobs.edits import EditRequest, submit_edit
from jobs.handlers.generate import submit_generate
from jobs.handlers.swap_face import submit_swap_face
from jobs.histories import record_step, start_history
from jobs.images import store_array
from jobs.planning import submit_plan
from jobs.segmentation import submit_segmentation
from jobs.services import Services, access, reviews
from jobs.services.permissions import Actor, PermissionDenied
from tests.team_support import Team, make_team, open_app_as

# Y: allowed, -: refused. Columns: role/object, where the object is the person's own history ("own"), another
# editor's history shared with the team ("team"), or another editor's private history ("priv"). Actions that
# take no history (generate, plan) read the same in every column. No one decides on a step they made themselves.
EXPECTED_ACTIONS = """
action            admin/own admin/team admin/priv editor/own editor/team editor/priv reviewer/own reviewer/team reviewer/priv viewer/own viewer/team viewer/priv
read                  Y         Y          Y          Y          Y           -             -             Y            -             -            Y           -
set_base              Y         Y          Y          Y          -           -             -             -            -             -            -           -
share                 Y         Y          Y          Y          -           -             -             -            -             -            -           -
rename                Y         Y          Y          Y          -           -             -             -            -             -            -           -
delete                Y         Y          Y          Y          -           -             -             -            -             -            -           -
submit_edit           Y         Y          Y          Y          -           -             -             -            -             -            -           -
submit_swap_face      Y         Y          Y          Y          -           -             -             -            -             -            -           -
submit_generate       Y         Y          Y          Y          Y           Y             -             -            -             -            -           -
submit_plan           Y         Y          Y          Y          Y           Y             -             -            -             -            -           -
submit_segment        Y         Y          Y          Y          Y           Y             -             -            -             -            -           -
review_decide         -         Y          Y          -          -           -             -             Y            -             -            -           -
review_comment        Y         Y          Y          Y          Y           -             -             Y            -             -            -           -
review_thread         Y         Y          Y          Y          Y           -             -             Y            -             -            Y           -
gallery_lists         Y         Y          Y          Y          Y           -             -             Y            -             -            Y           -
"""

OBJECTS = ("own", "team", "priv")


def _expected() -> dict[tuple[str, str, str], bool]:
    header, *rows = [line.split() for line in EXPECTED_ACTIONS.strip().splitlines()]
    cells = {}
    for row in rows:
        for column, mark in zip(header[1:], row[1:], strict=True):
            role, obj = column.split("/")
            cells[(row[0], role, obj)] = mark == "Y"
    return cells


EXPECTED = _expected()


@dataclass(frozen=True)
class Target:
    """One history to act on: its id, its root step, an edit step made by its owner, the image."""

    history_id: int
    root: int
    step: int
    image_id: int


def _make_target(services: Services, owner: Actor, visibility: str) -> Target:
    image = store_array(services, np.full((8, 8, 3), 120, np.uint8), user_id=owner.id)
    started = start_history(services, image.id, owner_id=owner.id, visibility=visibility, title=f"{owner.name}'s")
    step = record_step(services, history_id=started.history_id, parent_id=started.root_step_id, image_id=image.id,
                       commands=[{"command": "adjust", "paras": ["brightness", 0.2, ["Whole"]]}], params={},
                       job_id=None, user_id=owner.id)
    return Target(started.history_id, started.root_step_id, step, image.id)


def _actions() -> dict[str, Callable[[Services, Actor, Target], object]]:
    """Each door action, as a person would ask it of one history."""

    def read(s: Services, a: Actor, t: Target) -> object:
        return access.readable_history(s, a, t.history_id)

    def gallery_lists(s: Services, a: Actor, t: Target) -> object:
        from jobs.gallery import list_histories

        if t.history_id not in {c.id for c in list_histories(s, viewer=a, limit=1000)}:
            raise PermissionDenied(a, "history.read_team")
        return True

    return {
        "read": read,
        "set_base": lambda s, a, t: access.change_base(s, a, t.history_id, t.root, seen_version=None),
        "share": lambda s, a, t: access.share(s, a, t.history_id, "team"),
        "rename": lambda s, a, t: access.rename(s, a, t.history_id, "Renamed"),
        "delete": lambda s, a, t: access.delete(s, a, t.history_id),
        "submit_edit": lambda s, a, t: submit_edit(s, EditRequest(
            image_id=t.image_id, commands=[{"command": "adjust", "paras": ["brightness", 0.1, ["Whole"]]}],
            history_id=t.history_id, parent_step_id=t.step, user_id=a.id)),
        "submit_swap_face": lambda s, a, t: submit_swap_face(s, source_image_id=t.image_id, target_image_id=t.image_id,
                                                             history_id=t.history_id, parent_step_id=t.step,
                                                             user_id=a.id),
        "submit_generate": lambda s, a, t: submit_generate(s, "a red apple", user_id=a.id),
        "submit_plan": lambda s, a, t: submit_plan(s, "make it brighter", labels=["Whole"], user_id=a.id),
        "submit_segment": lambda s, a, t: submit_segmentation(s, t.image_id, user_id=a.id),
        "review_decide": lambda s, a, t: reviews.decide(s, a, t.step, "approve"),
        "review_comment": lambda s, a, t: reviews.comment(s, a, t.step, "Nice light."),
        "review_thread": lambda s, a, t: reviews.thread(s, a, t.step),
        "gallery_lists": gallery_lists,
    }


def test_the_table_names_every_action_role_and_object() -> None:
    assert {action for action, _, _ in EXPECTED} == set(_actions())
    assert {role for _, role, _ in EXPECTED} == set(USER_ROLES)
    assert {obj for _, _, obj in EXPECTED} == set(OBJECTS)
    assert len(EXPECTED) == len(_actions()) * len(USER_ROLES) * len(OBJECTS)


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


def _owner_of(team: Team, actor: Actor, obj: str) -> tuple[Actor, str]:
    """Whose history the cell acts on, and its visibility: the actor's own (private), or another editor's."""
    if obj == "own":
        return actor, "private"
    other = team.other_editor if actor.id != team.other_editor.id else team.editor
    return other, "team" if obj == "team" else "private"


@pytest.mark.parametrize("role", USER_ROLES)
def test_every_cell_of_the_matrix_is_what_the_table_says(services: Services, team: Team, role: str) -> None:
    actor = team.by_role()[role]
    leaks, refusals = [], []
    for name, action in _actions().items():
        for obj in OBJECTS:
            owner, visibility = _owner_of(team, actor, obj)
            target = _make_target(services, owner, visibility)
            try:
                action(services, actor, target)
                outcome = True
            except (PermissionDenied, reviews.ReviewRefused) as exc:
                outcome = False
                reason = str(exc)
            expected = EXPECTED[(name, role, obj)]
            if outcome and not expected:
                leaks.append(f"{name} {role}/{obj}")
            elif not outcome and expected:
                refusals.append(f"{name} {role}/{obj}: {reason}")
    assert not leaks, f"allowed where the table says no: {leaks}"
    assert not refusals, f"refused where the table says yes: {refusals}"


# ---------------------------------------------------------------------- pages, in the app (AppTest)

# Y: the page is in the person's menu and shows its content; -: it is not in the menu, and opening its file
# anyway (a stale link) shows only the refusal sentence.
EXPECTED_PAGES = """
page       admin editor reviewer viewer
editor       Y     Y      Y        Y
gallery      Y     Y      Y        Y
review       Y     -      Y        -
datasets     Y     -      -        -
evaluation   Y     -      -        -
finetune     Y     -      -        -
settings     Y     Y      Y        Y
accounts     Y     -      -        -
status       Y     Y      Y        Y
manual       Y     Y      Y        Y
"""

# What the Editor does with ?history=N: edit (chat and controls), read (the images, no controls), or refused
# (the sentence and nothing of the history).
EXPECTED_EDITOR = """
role      own      team   priv
admin     edit     edit   edit
editor    edit     read   refused
reviewer  refused  read   refused
viewer    refused  read   refused
"""

VIEWS = Path(__file__).parents[1] / "app" / "views"


def _table(text: str) -> dict[tuple[str, str], str]:
    header, *rows = [line.split() for line in text.strip().splitlines()]
    return {(row[0], column): mark for row in rows for column, mark in zip(header[1:], row[1:], strict=True)}


def test_every_page_has_a_row_and_the_menu_table_agrees() -> None:
    """A new page (a file in app/views/) without a row here, or without an entry in the menu's table, fails."""
    pages = {page for page, _ in _table(EXPECTED_PAGES)}
    assert {p.stem for p in VIEWS.glob("*.py")} == pages == set(PAGE_PERMISSIONS)
    assert {role for _, role in _table(EXPECTED_PAGES)} == set(USER_ROLES)
    assert {role for role, _ in _table(EXPECTED_EDITOR)} == set(USER_ROLES)


def _refusals(at: AppTest, actor: Actor) -> list[str]:
    return [e.value for e in at.error if e.value.startswith(f"{actor.label} ({actor.role}) may not")]


@pytest.fixture
def signed_in_team(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Team:
    monkeypatch.setenv("CHATEDIT_AUTH", "local")
    return make_team(app_env)


@pytest.mark.parametrize("role", USER_ROLES)
def test_every_page_for_every_role(signed_in_team: Team, role: str) -> None:
    team = signed_in_team
    actor = team.by_role()[role]
    token = team.token(actor)
    for (page, column), mark in _table(EXPECTED_PAGES).items():
        if column != role:
            continue
        if mark == "Y":
            at = open_app_as(token, page=page)
            assert not at.exception, (page, at.exception)
            assert not _refusals(at, actor), (page, _refusals(at, actor))
            continue
        with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in the menu
            open_app_as(token, page=page)
        direct = AppTest.from_file(str(VIEWS / f"{page}.py"), default_timeout=60)
        direct.session_state[ACTOR_KEY] = actor
        direct.run()
        assert not direct.exception, (page, direct.exception)
        assert _refusals(direct, actor), f"{page} served to {role} without a refusal"
        assert not direct.button and not direct.text_input and not direct.get("image"), f"{page} leaked content"


@pytest.mark.parametrize("role", USER_ROLES)
def test_the_editor_for_every_role_and_every_history(app_env: Services, signed_in_team: Team, role: str) -> None:
    team = signed_in_team
    actor = team.by_role()[role]
    token = team.token(actor)
    for obj in OBJECTS:
        owner, visibility = _owner_of(team, actor, obj)
        target = _make_target(app_env, owner, visibility)
        at = open_app_as(token, history=str(target.history_id))
        assert not at.exception, (obj, at.exception)
        refused, images, chat = bool(_refusals(at, actor)), len(at.get("image")), len(at.chat_input)
        seen = "refused" if refused else ("edit" if chat else "read")
        expected = _table(EXPECTED_EDITOR)[(role, obj)]
        assert seen == expected, f"{role}/{obj}: the editor let them {seen}, the table says {expected}"
        if refused:
            assert images == 0 and f"{owner.name}'s" not in [t.value for t in at.title], f"{role}/{obj} leaked"
        else:
            assert images >= 1
