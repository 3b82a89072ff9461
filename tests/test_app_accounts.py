"""The Accounts page as an admin uses it: create people through the form, change a role, disable
someone; refusals are sentences that keep what was typed; anyone else is refused."""

from __future__ import annotations

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from app.ui.accounts import (
    CREATE_FIELDS,
    NEW_PASSWORD,
    NEW_PASSWORD_AGAIN,
    NEW_ROLE,
    PICK,
    SET_PASSWORD,
    SET_PASSWORD_AGAIN,
)
from jobs.services import Services
from jobs.services import accounts as accounts_module
from jobs.services.permissions import local_actor
from tests.app_support import open_app
from tests.team_support import CHEAP, PASSWORD, Team, make_team, open_app_as

NAME, DISPLAY, EMAIL = CREATE_FIELDS


@pytest.fixture
def team(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Team:
    monkeypatch.setenv("CHATEDIT_AUTH", "local")
    monkeypatch.setattr(accounts_module, "PASSWORD_COSTS", CHEAP)
    return make_team(app_env)


def _create(at: AppTest, name: str, display: str, email: str, role: str, password: str, again: str) -> AppTest:
    at.text_input(key=NAME).input(name)
    at.text_input(key=DISPLAY).input(display)
    at.text_input(key=EMAIL).input(email)
    at.selectbox(key=NEW_ROLE).set_value(role)
    at.text_input(key=NEW_PASSWORD).input(password)
    at.text_input(key=NEW_PASSWORD_AGAIN).input(again)
    return at.button(key="accounts_create_submit").click().run()


def _rows(at: AppTest) -> dict[str, dict[str, str]]:
    """The accounts table (the page's first), by user name."""
    frame = at.table[0].value
    return {row["name"]: row for row in frame.to_dict("records")}


def _messages(at: AppTest) -> tuple[list[str], list[str]]:
    return [s.value for s in at.success], [e.value for e in at.error]


def test_an_admin_creates_an_editor_and_a_reviewer_changes_a_role_and_disables_one(team: Team) -> None:
    at = open_app_as(team.token(team.admin), page="accounts")
    assert not at.exception, at.exception
    assert at.title[0].value == "Accounts"
    assert set(_rows(at)) == {"local", "ada", "ed", "eve", "rita", "vic"}

    _create(at, "bea", "Bea B.", "bea@example.org", "editor", PASSWORD, PASSWORD)
    assert _messages(at) == (["Created bea (editor) with a password."], [])
    assert at.text_input(key=NAME).value == "", "a made account empties the form"
    _create(at, "ray", "Ray", "", "reviewer", "", "")
    assert _messages(at) == (["Created ray (reviewer) without a password."], [])
    rows = _rows(at)
    assert (rows["bea"]["display name"], rows["bea"]["e-mail"], rows["bea"]["role"], rows["bea"]["password"]) == \
        ("Bea B.", "bea@example.org", "editor", "yes")
    assert (rows["ray"]["role"], rows["ray"]["password"], rows["ray"]["last sign-in"]) == ("reviewer", "no", "never")
    assert team.accounts.verify_password("bea", PASSWORD).role == "editor"

    at.selectbox(key=PICK).set_value("bea").run()
    at.selectbox(key="accounts_role_bea").set_value("reviewer")
    at.button(key="accounts_role_submit").click().run()
    assert _messages(at) == (["bea is now reviewer."], [])
    assert _rows(at)["bea"]["role"] == "reviewer"

    at.selectbox(key=PICK).set_value("ray").run()
    assert at.button(key="accounts_toggle").label == "Disable ray"
    at.button(key="accounts_toggle").click().run()
    assert _messages(at) == (["ray is disabled; its sessions have ended."], [])
    assert _rows(at)["ray"]["active"] == "disabled"
    assert at.button(key="accounts_toggle").label == "Enable ray"

    audit = at.table[2].value.to_dict("records")  # accounts, roles, audit log
    assert audit[0]["who"] == "Ada" and audit[0]["what"] == "user.disabled" and audit[0]["which"] == "user ray"
    assert {"user.created", "user.role_set"} <= {row["what"] for row in audit}
    assert not at.exception, at.exception


def test_refusals_are_sentences_and_keep_what_was_typed(team: Team) -> None:
    at = open_app_as(team.token(team.admin), page="accounts")
    _create(at, "zed", "Zed", "zed@example.org", "viewer", PASSWORD, PASSWORD + "!")
    assert _messages(at) == ([], ["The two passwords differ; type the same password twice."])
    assert (at.text_input(key=NAME).value, at.text_input(key=EMAIL).value, at.selectbox(key=NEW_ROLE).value) == \
        ("zed", "zed@example.org", "viewer")
    assert "zed" not in _rows(at)

    _create(at, "ED", "Another Ed", "", "editor", PASSWORD, PASSWORD)
    assert _messages(at) == ([], ["The name ED is taken (by ed); choose another."])
    assert at.text_input(key=DISPLAY).value == "Another Ed"

    at.selectbox(key=PICK).set_value("local").run()
    at.selectbox(key="accounts_role_local").set_value("viewer")
    at.button(key="accounts_role_submit").click().run()
    assert [e.value[:38] for e in at.error] == ["Cannot make local a viewer: the app an"]
    assert _rows(at)["local"]["role"] == "admin"
    at.button(key="accounts_toggle").click().run()
    assert [e.value[:22] for e in at.error] == ["Cannot disable local: "]
    assert _rows(at)["local"]["active"] == "yes"

    at.selectbox(key=PICK).set_value("vic").run()
    at.text_input(key=SET_PASSWORD).input("short")
    at.text_input(key=SET_PASSWORD_AGAIN).input("short")
    at.button(key="accounts_password_submit").click().run()
    assert at.error[-1].value == "A password is 8 to 1024 characters long, not 5."
    at.text_input(key=SET_PASSWORD).input("a brand new secret")
    at.text_input(key=SET_PASSWORD_AGAIN).input("a brand new secret")
    at.button(key="accounts_password_submit").click().run()
    assert _messages(at) == (["The password of vic is set; its sessions have ended."], [])
    assert team.accounts.verify_password("vic", "a brand new secret").name == "vic"


def test_the_roles_and_the_sign_ins_are_shown(team: Team) -> None:
    team.accounts.verify_password("ed", PASSWORD)
    with pytest.raises(accounts_module.SignInRefused):
        team.accounts.verify_password("ed", "wrong password")
    at = open_app_as(team.token(team.admin), page="accounts")
    roles = {row["role"]: row for row in at.table[1].value.to_dict("records")}
    assert set(roles) == {"admin", "editor", "reviewer", "viewer"}
    assert "manage accounts" in roles["admin"]["may"] and "manage accounts" not in roles["editor"]["may"]
    assert roles["viewer"]["may"] == "read the team's histories"
    today = team.accounts.sign_in_counts(team.admin, 1)
    assert [(ok, failed) for _, ok, failed in today] == [(1, 1)]
    (chart,) = at.get("vega_lite_chart")
    bars = [row for data in chart.proto.datasets for row in pa.ipc.open_stream(data.data.data).read_all().to_pylist()]
    day = today[0][0].isoformat()
    assert {(b["day"], b["outcome"], b["count"]) for b in bars if b["day"] == day} == \
        {(day, "succeeded", 1), (day, "failed", 1)}
    assert len(bars) == 2 * 14, "every day of the last two weeks has its two bars, most of them 0"


@pytest.mark.parametrize("who", ["editor", "reviewer", "viewer"])
def test_anyone_but_an_admin_is_refused(team: Team, who: str) -> None:
    actor = team.by_role()[who]
    at = open_app_as(team.token(actor))
    assert not at.exception, at.exception
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("views/accounts.py")  # not in their menu

    def page(acting: object) -> None:  # the page's own check, for a typed URL or a stale link
        from app.ui.accounts import render
        from app.ui.identity import set_actor

        set_actor(acting)  # type: ignore[arg-type]
        render()

    direct = AppTest.from_function(page, args=(actor,), default_timeout=30).run()
    assert not direct.exception, direct.exception
    assert [e.value for e in direct.error] == \
        [f"{actor.label} ({who}) may not manage accounts. The Accounts page is for admins."]
    assert not direct.table and not direct.text_input and not direct.button



def test_an_admin_demoted_while_the_page_is_open_changes_nothing_more(team: Team, app_env: Services) -> None:
    at = open_app_as(team.token(team.admin), page="accounts")
    team.accounts.set_role(local_actor(app_env), "ada", "editor")
    _create(at, "mallory", "Mallory", "", "admin", PASSWORD, PASSWORD)
    assert "mallory" not in {a.name for a in team.accounts.list_users(local_actor(app_env))}
    assert not at.success and NAME not in [t.key for t in at.text_input], "the page is no longer Ada's to see"


def test_with_sign_in_off_the_local_admin_has_the_page(app_env: Services) -> None:
    at = open_app("accounts")
    assert at.title[0].value == "Accounts"
    assert list(_rows(at)) == ["local"]
    assert at.button(key="accounts_toggle").label == "Disable local"
