"""Ownership, visibility and the optimistic base check, at the service door, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from jobs.gallery import base_step_id, list_histories
from jobs.histories import StaleHistory, get_history, history_version, record_step, start_history
from jobs.images import store_array
from jobs.services import Services, access
from jobs.services.permissions import PermissionDenied
from tests.team_support import Team, make_team


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


def _history(services: Services, owner: int, *, visibility: str | None = None) -> tuple[int, int, int]:
    """A history of ``owner`` with a root and one edit step: (history id, root step, edit step)."""
    image = store_array(services, np.full((8, 8, 3), 90, np.uint8), user_id=owner)
    started = start_history(services, image.id, owner_id=owner, visibility=visibility)
    step = record_step(services, history_id=started.history_id, parent_id=started.root_step_id, image_id=image.id,
                       commands=[{"command": "adjust", "paras": ["brightness", 0.2, ["Whole"]]}], params={},
                       job_id=None, user_id=owner)
    return started.history_id, started.root_step_id, step


def test_a_new_history_is_private_by_default_and_only_its_owner_and_admins_read_it(services: Services,
                                                                                  team: Team) -> None:
    history_id, _, _ = _history(services, team.editor.id)
    assert get_history(services, history_id).visibility == "private"
    assert access.readable_history(services, team.editor, history_id).id == history_id
    assert access.readable_history(services, team.admin, history_id).id == history_id
    for outsider in (team.other_editor, team.reviewer, team.viewer):
        with pytest.raises(PermissionDenied, match="may not read other people's private histories"):
            access.readable_history(services, outsider, history_id)


def test_sharing_lets_the_team_read_but_only_the_owner_and_admins_change(services: Services, team: Team) -> None:
    history_id, root, _ = _history(services, team.editor.id)
    access.share(services, team.editor, history_id, "team")
    for reader in (team.other_editor, team.reviewer, team.viewer):
        access.readable_history(services, reader, history_id)
        with pytest.raises(PermissionDenied, match="may not change other people's histories"):
            access.change_base(services, reader, history_id, root, seen_version=None)
        with pytest.raises(PermissionDenied):
            access.share(services, reader, history_id, "private")
    access.change_base(services, team.admin, history_id, root, seen_version=None)
    assert base_step_id(services, history_id) == root


def test_the_gallery_lists_what_each_person_may_read(services: Services, team: Team) -> None:
    private, _, _ = _history(services, team.editor.id)
    shared, _, _ = _history(services, team.editor.id, visibility="team")
    theirs, _, _ = _history(services, team.other_editor.id)

    def ids(actor) -> set[int]:  # type: ignore[no-untyped-def]
        return {card.id for card in list_histories(services, viewer=actor)}

    assert ids(team.editor) >= {private, shared} and theirs not in ids(team.editor)
    assert ids(team.viewer) == {shared} == ids(team.reviewer)
    assert ids(team.admin) >= {private, shared, theirs}


def test_a_base_change_made_on_an_old_view_is_refused_with_who_and_when(services: Services, team: Team) -> None:
    history_id, root, step = _history(services, team.admin.id, visibility="team")
    seen = get_history(services, history_id).version
    access.change_base(services, team.admin, history_id, step, seen_version=seen)  # Ada acts first
    with pytest.raises(StaleHistory) as info:
        access.change_base(services, team.admin, history_id, root, seen_version=seen)  # the same old view again
    assert "Ada chose another base step at" in str(info.value)
    assert "Nothing was changed" in str(info.value)
    assert base_step_id(services, history_id) == step
    now = history_version(services, history_id)
    assert (now.version, now.changed_by, now.change) == (seen + 1, team.admin.id, "base")


def test_every_change_moves_the_version_and_says_who_made_it(services: Services, team: Team) -> None:
    history_id, root, step = _history(services, team.editor.id)
    versions = [history_version(services, history_id)]
    access.rename(services, team.editor, history_id, "Portrait")
    access.share(services, team.editor, history_id, "team")
    access.delete(services, team.editor, history_id)
    access.restore(services, team.editor, history_id)
    image = store_array(services, np.full((8, 8, 3), 30, np.uint8), user_id=team.editor.id)
    record_step(services, history_id=history_id, parent_id=step, image_id=image.id, commands=[], params={},
                job_id=None, user_id=team.editor.id)
    versions.append(history_version(services, history_id))
    assert versions[1].version == versions[0].version + 5
    assert versions[1].change == "step" and versions[1].changed_by_name == "Ed"


def test_two_people_setting_the_base_at_once_one_wins_and_the_other_is_told(services: Services, team: Team) -> None:
    history_id, root, step = _history(services, team.admin.id)
    seen = get_history(services, history_id).version
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def choose(target: int) -> None:
        barrier.wait()
        try:
            access.change_base(services, team.admin, history_id, target, seen_version=seen)
            outcomes.append("won")
        except StaleHistory:
            outcomes.append("refused")

    threads = [threading.Thread(target=choose, args=(t,)) for t in (root, step)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "won"]
    assert history_version(services, history_id).version == seen + 1
