"""The one permission table: every role × every permission as written down here, ownership, disabled accounts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from db.models import LOCAL_USER_ID, LOCAL_USER_NAME, USER_ROLES
from jobs.services import Services
from jobs.services.permissions import (
    BROADER,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    Actor,
    PermissionDenied,
    UnknownUser,
    actor_for,
    allowed,
    local_actor,
    require,
)

# Y: allowed, -: refused. A new role or permission without a row or column here fails the first test.
EXPECTED = """
permission          admin editor reviewer viewer
jobs.submit           Y     Y      -       -
history.read_own      Y     Y      -       -
history.read_team     Y     Y      Y       Y
history.read_private  Y     -      -       -
history.write_own     Y     Y      -       -
history.write_any     Y     -      -       -
review.decide         Y     -      Y       -
review.comment        Y     Y      Y       -
users.manage          Y     -      -       -
datasets.manage       Y     -      -       -
training.run          Y     -      -       -
settings.own          Y     Y      -       -
"""


def _expected() -> dict[tuple[str, str], bool]:
    header, *rows = [line.split() for line in EXPECTED.strip().splitlines()]
    roles = header[1:]
    return {(role, row[0]): mark == "Y" for row in rows for role, mark in zip(roles, row[1:], strict=True)}


@dataclass
class Thing:
    id: int
    owner_id: int


def _actor(role: str, *, id: int = 7, active: bool = True) -> Actor:
    return Actor(id=id, name="bea", display_name="Bea", role=role, active=active)


def test_the_table_is_exactly_the_expected_matrix() -> None:
    expected = _expected()
    assert {role for role, _ in expected} == set(USER_ROLES) == set(ROLE_PERMISSIONS)
    assert {permission for _, permission in expected} == set(PERMISSIONS)
    actual = {(role, p): p in ROLE_PERMISSIONS[role] for role in USER_ROLES for p in PERMISSIONS}
    assert actual == expected
    for (role, permission), ok in expected.items():
        # An _own permission is also held through the broader one (a reviewer reads the team's, own included).
        covered = expected.get((role, BROADER.get(permission, "")), False)
        assert allowed(_actor(role), permission) is (ok or covered), (role, permission)


def test_own_permissions_hold_for_the_owner_and_broader_ones_for_everyone() -> None:
    editor, admin, reviewer = _actor("editor", id=7), _actor("admin", id=1), _actor("reviewer", id=9)
    mine, theirs = Thing(id=3, owner_id=7), Thing(id=4, owner_id=8)
    require(editor, "history.write_own", mine)
    with pytest.raises(PermissionDenied) as info:
        require(editor, "history.write_own", theirs)
    assert str(info.value) == "Bea (editor) may not change their own histories (thing 4, owned by user 8)."
    require(admin, "history.write_own", theirs)  # write_any covers it
    with pytest.raises(PermissionDenied):
        require(reviewer, "history.read_own", theirs)  # reading is decided by visibility: history.read
    with pytest.raises(PermissionDenied):
        require(editor, "history.write_any", mine)


@dataclass
class Story:
    id: int
    owner_id: int
    visibility: str


def test_history_permissions_follow_ownership_and_visibility() -> None:
    """history.read / history.write on a history become the table's permission for it: own, team or private."""
    editor, other, admin = _actor("editor", id=7), _actor("editor", id=8), _actor("admin", id=1)
    viewer, reviewer = _actor("viewer", id=9), _actor("reviewer", id=10)
    private, team = Story(3, 7, "private"), Story(4, 7, "team")
    assert allowed(editor, "history.read", private) and allowed(editor, "history.write", private)
    assert not allowed(other, "history.read", private)
    assert allowed(other, "history.read", team) and not allowed(other, "history.write", team)
    assert allowed(viewer, "history.read", team) and not allowed(viewer, "history.read", private)
    assert allowed(reviewer, "history.read", team) and not allowed(reviewer, "history.write", team)
    assert allowed(admin, "history.read", private) and allowed(admin, "history.write", private)
    with pytest.raises(PermissionDenied) as info:
        require(other, "history.write", team)
    assert str(info.value) == "Bea (editor) may not change other people's histories (story 4, owned by user 7)."
    with pytest.raises(PermissionDenied) as info:
        require(viewer, "history.read", private)
    assert info.value.permission == "history.read_private"
    with pytest.raises(ValueError):
        allowed(editor, "history.read")


def test_a_viewer_may_not_submit_and_the_sentence_says_so() -> None:
    with pytest.raises(PermissionDenied) as info:
        require(_actor("viewer"), "jobs.submit")
    assert str(info.value) == "Bea (viewer) may not submit jobs."
    assert (info.value.permission, info.value.actor.role, info.value.obj) == ("jobs.submit", "viewer", None)


def test_a_disabled_account_may_do_nothing_even_as_admin() -> None:
    admin = _actor("admin", active=False)
    for permission in PERMISSIONS:
        assert not allowed(admin, permission)
    with pytest.raises(PermissionDenied, match=r"^Bea \(admin\) may not read the team's histories: the account is "
                                               r"disabled\.$"):
        require(admin, "history.read_team")


def test_an_unknown_permission_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="no permission 'jobs.sumbit'"):
        allowed(_actor("admin"), "jobs.sumbit")


def test_the_local_user_is_the_admin_while_sign_in_is_off(services: Services) -> None:
    local = local_actor(services)
    assert (local.id, local.name, local.role, local.active) == (LOCAL_USER_ID, LOCAL_USER_NAME, "admin", True)
    assert actor_for(services, LOCAL_USER_ID) == local
    assert all(allowed(local, p) for p in PERMISSIONS)
    with pytest.raises(UnknownUser, match="There is no user number 99"):
        actor_for(services, 99)


def test_the_readme_lists_each_roles_permissions_as_the_table_does() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Accounts, roles, sign-in and review", 1)[1].split("\n### ", 1)[0]
    listed = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            listed[cells[0].strip("`")] = {p.strip().strip("`") for p in cells[2].split(",")}
    assert listed == {role: set(permissions) for role, permissions in ROLE_PERMISSIONS.items()}
