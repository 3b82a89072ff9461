"""`chatedit users` end to end: passwords from standard input, the local admin in the audit log, errors as sentences."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from db.models import LOCAL_USER_ID
from jobs.services import Services
from jobs.services import accounts as accounts_module
from jobs.services.accounts import Accounts, SignInRefused, make_password_hasher
from tests.test_accounts import CHEAP


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "PASSWORD_COSTS", CHEAP)


def _run(env: dict[str, str], *args: str, stdin: str = ""):
    result = CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def test_help_lists_the_users_commands() -> None:
    output = CliRunner().invoke(cli, ["users", "--help"]).output
    for command in ("list", "create", "set-role", "disable", "enable", "set-password"):
        assert f"  {command} " in output


def test_create_with_a_password_from_stdin_then_list_set_role_disable_enable(
        services: Services, worker_env: dict[str, str]) -> None:
    created = _run(worker_env, "users", "create", "bea", "--role", "editor", "--email", "bea@example.org",
                   "--display-name", "Bea B.", stdin="a long secret\n")
    assert created.exit_code == 0, created.output
    assert created.output == "Created bea (editor) with a password.\n"
    accounts = Accounts(services, passwords=make_password_hasher(CHEAP))
    assert accounts.verify_password("bea", "a long secret").role == "editor"

    assert _run(worker_env, "users", "create", "cy", "--role", "viewer").output == \
        "Created cy (viewer) without a password.\n"
    assert _run(worker_env, "users", "set-role", "cy", "reviewer").output == "cy is now reviewer.\n"
    assert _run(worker_env, "users", "disable", "cy").output == "cy is disabled.\n"
    listing = _run(worker_env, "users", "list")
    assert listing.exit_code == 0
    assert "bea                  editor    active   yes       Bea B. / bea@example.org" in listing.output
    assert "cy                   reviewer  disabled no" in listing.output
    assert _run(worker_env, "users", "enable", "cy").exit_code == 0

    data = json.loads(_run(worker_env, "users", "list", "--json").output)
    assert [(u["name"], u["role"], u["active"], u["has_password"]) for u in data] == [
        ("local", "admin", True, False), ("bea", "editor", True, True), ("cy", "reviewer", True, False)]
    assert "password_hash" not in data[1]

    with services.database.read() as conn:
        rows = conn.execute(sa.text("SELECT DISTINCT actor_id FROM audit_log WHERE object_type = 'user'")).all()
    assert rows == [(LOCAL_USER_ID,)], "the command line acts as the local admin"


def test_set_password_reads_one_line_and_ends_sessions(services: Services, worker_env: dict[str, str]) -> None:
    _run(worker_env, "users", "create", "bea", "--role", "viewer", stdin="first secret\n")
    accounts = Accounts(services, passwords=make_password_hasher(CHEAP))
    token = accounts.start_session(accounts.verify_password("bea", "first secret"))
    changed = _run(worker_env, "users", "set-password", "bea", stdin="second secret\r\nignored line\n")
    assert changed.exit_code == 0 and changed.output == "The password of bea is set; its sessions have ended.\n"
    assert accounts.session_user(token) is None
    assert accounts.verify_password("bea", "second secret").name == "bea"
    with pytest.raises(SignInRefused):
        accounts.verify_password("bea", "first secret")


@pytest.mark.parametrize(("args", "stdin", "sentence"), [
    (("users", "set-password", "bea"), "", "No password came on standard input"),
    (("users", "create", "bea", "--role", "editor"), "short\n", "A password is 8 to 1024 characters long, not 5."),
    (("users", "create", "Local", "--role", "editor"), "", "The name Local is taken (by local); choose another."),
    (("users", "create", "two words", "--role", "editor"), "", "A user name is 1 to 64 letters"),
    (("users", "set-role", "nobody", "viewer"), "", "There is no user named 'nobody'."),
    (("users", "set-role", "local", "viewer"), "", "Cannot make local a viewer: the app and the command line act"),
    (("users", "disable", "local"), "", "Cannot disable local:"),
])
def test_refusals_are_one_sentence_and_exit_1(services: Services, worker_env: dict[str, str], args: tuple[str, ...],
                                              stdin: str, sentence: str) -> None:
    _run(worker_env, "users", "create", "bea", "--role", "editor", stdin="a long secret\n")
    result = _run(worker_env, *args, stdin=stdin)
    assert result.exit_code == 1
    assert sentence in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_role_must_be_one_of_the_four(services: Services, worker_env: dict[str, str]) -> None:
    result = _run(worker_env, "users", "create", "bea", "--role", "boss")
    assert result.exit_code == 2 and "'admin', 'editor', 'reviewer', 'viewer'" in result.output
