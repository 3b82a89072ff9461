"""The accounts service on both databases: accounts, passwords, the growing delay, sessions, the audit log."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from db.models import LOCAL_USER_ID
from jobs.services import Services
from jobs.services.accounts import (
    AccountError,
    Accounts,
    ArgonCosts,
    SignInRefused,
    SignInThrottled,
    make_password_hasher,
    sign_in_delay,
    token_hash,
)
from jobs.services.permissions import Actor, PermissionDenied, UnknownUser, local_actor
from tests.conftest import ManualClock

#: Argon2id at its smallest: the real code path, milliseconds per hash.
CHEAP = ArgonCosts(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def accounts(services: Services, clock: ManualClock) -> Accounts:
    return Accounts(services, clock=clock, passwords=make_password_hasher(CHEAP))


@pytest.fixture
def admin(services: Services) -> Actor:
    return local_actor(services)


def _audit(services: Services) -> list[tuple]:
    with services.database.read() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT actor_id, action, object_type, object_id FROM audit_log ORDER BY id"))]


def test_create_list_and_the_audit_row_naming_who_did_it(accounts: Accounts, admin: Actor, services: Services) -> None:
    bea = accounts.create_user(admin, "Bea", role="viewer", email=" Bea@Example.org ", display_name="Bea B.")
    assert (bea.name, bea.role, bea.email, bea.display_name, bea.active, bea.has_password) == \
        ("Bea", "viewer", "bea@example.org", "Bea B.", True, False)
    assert [a.name for a in accounts.list_users(admin)] == ["local", "Bea"]
    assert _audit(services) == [(LOCAL_USER_ID, "user.created", "user", str(bea.id))]


@pytest.mark.parametrize("name", ["", "a" * 65, "bea smith", "bea/../x", "bé"])
def test_user_names_are_1_to_64_plain_characters(accounts: Accounts, admin: Actor, name: str) -> None:
    with pytest.raises(AccountError, match="A user name is 1 to 64 letters, digits"):
        accounts.create_user(admin, name)


def test_a_name_is_taken_whatever_its_case_and_an_email_once(accounts: Accounts, admin: Actor) -> None:
    accounts.create_user(admin, "bea", email="bea@example.org")
    with pytest.raises(AccountError, match=r"^The name BEA is taken \(by bea\); choose another\.$"):
        accounts.create_user(admin, "BEA")
    with pytest.raises(AccountError, match="The e-mail address bea@example.org belongs to another account."):
        accounts.create_user(admin, "cy", email="BEA@example.org")
    with pytest.raises(AccountError, match="There is no role 'boss'"):
        accounts.create_user(admin, "dee", role="boss")


def test_only_an_admin_manages_accounts(accounts: Accounts, admin: Actor, services: Services) -> None:
    accounts.create_user(admin, "ed", role="editor")
    editor = Actor(id=2, name="ed", display_name="", role="editor")
    with pytest.raises(PermissionDenied, match=r"^ed \(editor\) may not manage accounts\.$"):
        accounts.create_user(editor, "eve")
    with pytest.raises(PermissionDenied):
        accounts.set_role(editor, "ed", "admin")
    assert [a.name for a in accounts.list_users(admin)] == ["local", "ed"]


def test_password_round_trip_and_a_wrong_password(accounts: Accounts, admin: Actor, services: Services) -> None:
    accounts.create_user(admin, "bea", password=PASSWORD)
    with services.database.read() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM users WHERE name = 'bea'")).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.verify_password("Bea", PASSWORD).name == "bea"
    with pytest.raises(SignInRefused, match=r"^The name or the password is wrong\.$"):
        accounts.verify_password("bea", PASSWORD + "!")
    with pytest.raises(SignInRefused, match=r"^The name or the password is wrong\.$"):
        accounts.verify_password("nobody", PASSWORD)
    with pytest.raises(SignInRefused, match=r"^The name or the password is wrong\.$"):
        accounts.verify_password("bea", PASSWORD * 100)
    with pytest.raises(AccountError, match="A password is 8 to 1024 characters long, not 3"):
        accounts.set_password(admin, "bea", "abc")


def test_a_person_changes_their_own_password_and_not_anothers(accounts: Accounts, admin: Actor) -> None:
    accounts.create_user(admin, "bea", role="viewer", password=PASSWORD)
    accounts.create_user(admin, "cy", role="viewer", password=PASSWORD)
    bea = accounts.verify_password("bea", PASSWORD)
    accounts.set_password(bea, "bea", "a new secret")
    assert accounts.verify_password("bea", "a new secret") == bea
    with pytest.raises(PermissionDenied):
        accounts.set_password(bea, "cy", "not yours either")


def test_the_delay_grows_after_three_failures_and_is_decided_not_slept(accounts: Accounts, admin: Actor,
                                                                        clock: ManualClock) -> None:
    assert [sign_in_delay(n) for n in range(10)] == [0, 0, 0, 1, 2, 4, 8, 16, 30, 30]
    accounts.create_user(admin, "bea", password=PASSWORD)
    for _ in range(3):
        with pytest.raises(SignInRefused) as info:
            accounts.verify_password("bea", "wrong guess")
        assert not isinstance(info.value, SignInThrottled)
    with pytest.raises(SignInThrottled, match=r"^Too many failed sign-ins as bea; try again in 1 s\.$"):
        accounts.verify_password("bea", PASSWORD)  # refused without a check, even when right
    clock.advance(1)
    with pytest.raises(SignInRefused):
        accounts.verify_password("bea", "wrong again")
    with pytest.raises(SignInThrottled) as info:
        accounts.verify_password("bea", "wrong again")
    assert info.value.retry_after_s == 2
    assert accounts.failed_sign_ins("bea") == 4, "a throttled try is not counted"
    for _ in range(6):
        clock.advance(30)
        with pytest.raises(SignInRefused):
            accounts.verify_password("BEA", "wrong again")
    with pytest.raises(SignInThrottled) as info:
        accounts.verify_password("bea", PASSWORD)
    assert info.value.retry_after_s == 30, "the delay stops growing at 30 s"
    clock.advance(30)
    assert accounts.verify_password("bea", PASSWORD).name == "bea"
    assert accounts.failed_sign_ins("bea") == 0
    with pytest.raises(SignInRefused) as info:
        accounts.verify_password("bea", "wrong once more")
    assert not isinstance(info.value, SignInThrottled)


def test_an_unknown_name_is_throttled_like_a_known_one(accounts: Accounts) -> None:
    for _ in range(3):
        with pytest.raises(SignInRefused):
            accounts.verify_password("ghost", "whatever it is")
    with pytest.raises(SignInThrottled):
        accounts.verify_password("ghost", "whatever it is")


def test_sessions_store_only_a_hash_and_end_by_expiry_or_revocation(accounts: Accounts, admin: Actor,
                                                                     services: Services, clock: ManualClock) -> None:
    accounts.create_user(admin, "bea", role="reviewer", password=PASSWORD)
    bea = accounts.verify_password("bea", PASSWORD)
    token = accounts.start_session(bea)
    with services.database.read() as conn:
        dump = repr(conn.execute(sa.text("SELECT * FROM sessions")).all())
        dump += repr(conn.execute(sa.text("SELECT * FROM audit_log")).all())
        last_sign_in = conn.execute(sa.text("SELECT last_sign_in_at FROM users WHERE name = 'bea'")).scalar_one()
    assert token not in dump and token_hash(token) in dump
    assert last_sign_in is not None
    assert accounts.session_user(token) == bea
    assert accounts.session_user("not a token") is None

    clock.advance(services.settings.session_hours * 3600 - 1)
    assert accounts.session_user(token) == bea
    with services.database.read() as conn:
        seen = conn.execute(sa.text("SELECT last_seen_at FROM sessions")).scalar_one()
    assert str(seen).startswith("2026-01-01 23:59:59"), "last_seen_at follows use"
    clock.advance(1)
    assert accounts.session_user(token) is None, "expired"

    second = accounts.start_session(bea)
    assert accounts.end_session(second) is True
    assert accounts.session_user(second) is None, "revoked"
    assert accounts.end_session(second) is False


def test_disabling_ends_sessions_and_refuses_sign_in(accounts: Accounts, admin: Actor) -> None:
    accounts.create_user(admin, "bea", role="editor", password=PASSWORD)
    bea = accounts.verify_password("bea", PASSWORD)
    token = accounts.start_session(bea)
    assert accounts.disable(admin, "bea").active is False
    assert accounts.session_user(token) is None
    with pytest.raises(SignInRefused, match="The account bea is disabled; ask an admin to enable it."):
        accounts.verify_password("bea", PASSWORD)
    with pytest.raises(SignInRefused):
        accounts.start_session(bea)
    assert accounts.enable(admin, "bea").active is True
    assert accounts.session_user(token) is None, "a disabled account's sessions stay ended"
    assert accounts.session_user(accounts.start_session(bea)) == bea


def test_the_last_admin_and_the_local_user_stay_admins(accounts: Accounts, admin: Actor) -> None:
    with pytest.raises(AccountError, match="the app and the command line act as the local user"):
        accounts.set_role(admin, "local", "editor")
    with pytest.raises(AccountError, match="the app and the command line act as the local user"):
        accounts.disable(admin, "local")
    accounts.create_user(admin, "ann", role="admin")
    accounts.create_user(admin, "bob", role="admin")
    assert accounts.set_role(admin, "ann", "editor").role == "editor"
    assert accounts.disable(admin, "bob").active is False
    # The local user is an active admin throughout, so neither change left the team without one.
    accounts.set_role(admin, "ann", "admin")
    accounts.enable(admin, "bob")
    assert {a.name: a.role for a in accounts.list_users(admin)} == {"local": "admin", "ann": "admin", "bob": "admin"}


def test_the_last_active_admin_cannot_be_demoted_or_disabled(services: Services, accounts: Accounts,
                                                             admin: Actor) -> None:
    # A database where the local user is no longer an admin (as sign-in will allow): ann is the only one.
    accounts.create_user(admin, "ann", role="admin")
    with services.database.write() as conn:
        conn.execute(sa.text("UPDATE users SET role = 'editor' WHERE id = :id"), {"id": LOCAL_USER_ID})
    ann = accounts.get_user(admin, "ann")
    ann_actor = Actor(id=ann.id, name="ann", display_name="", role="admin")
    with pytest.raises(AccountError, match=r"^Cannot make ann a viewer: ann is the last active admin; make another "
                                           r"person admin first\.$"):
        accounts.set_role(ann_actor, "ann", "viewer")
    with pytest.raises(AccountError, match="Cannot disable ann: ann is the last active admin"):
        accounts.disable(ann_actor, "ann")


def test_the_audit_log_is_append_only_in_the_database(accounts: Accounts, admin: Actor, services: Services) -> None:
    accounts.create_user(admin, "bea")
    for statement in ("UPDATE audit_log SET action = 'nothing'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with services.database.write() as conn:
                conn.execute(sa.text(statement))
    assert [row[1] for row in _audit(services)] == ["user.created"]
    entries = accounts.audit_entries(admin)
    assert [(e.actor_id, e.action, e.detail["name"]) for e in entries] == [(LOCAL_USER_ID, "user.created", "bea")]


def test_every_change_appends_its_row(accounts: Accounts, admin: Actor, services: Services) -> None:
    bea = accounts.create_user(admin, "bea")
    accounts.set_role(admin, "bea", "reviewer")
    accounts.set_password(admin, "bea", PASSWORD)
    accounts.disable(admin, "bea")
    accounts.enable(admin, "bea")
    accounts.set_password(admin, "bea", None)
    uid = str(bea.id)
    assert _audit(services) == [(LOCAL_USER_ID, action, "user", uid) for action in (
        "user.created", "user.role_set", "user.password_set", "user.disabled", "user.enabled", "user.password_removed")]
    assert accounts.audit_entries(admin, limit=10)[4].detail == {"from": "editor", "to": "reviewer"}
    with pytest.raises(UnknownUser, match="There is no user named 'zed'"):
        accounts.set_role(admin, "zed", "viewer")
