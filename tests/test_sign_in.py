"""Signing in: the sign-in and first-run pages (AppTest), OIDC accounts (both databases), and `serve` off loopback."""

from __future__ import annotations

from datetime import timedelta

import click
import pytest
from streamlit.testing.v1 import AppTest

from app.cli import open_access_warning
from app.ui.identity import SESSION_TOKEN_KEY
from app.ui.samples import sample_png
from db.types import utcnow
from jobs.gallery import list_histories
from jobs.histories import start_history
from jobs.images import store_upload
from jobs.services import Services
from jobs.services import accounts as accounts_module
from jobs.services.accounts import Accounts, record_audit
from jobs.services.permissions import actor_for, local_actor
from jobs.services.sign_in import OidcRefused, oidc_sign_in, role_from_claims, session_actor
from tests.app_support import ENTRY
from tests.conftest import services_with
from tests.team_support import CHEAP, PASSWORD, make_team, open_app_as

EDITOR_GREETING = "Upload a photo or pick a sample image"
ISSUER = "https://id.example.com"


@pytest.fixture
def local_sign_in(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Services:
    """The app with CHATEDIT_AUTH=local; hashes the app makes are cheap (the tests are not about their cost)."""
    monkeypatch.setenv("CHATEDIT_AUTH", "local")
    monkeypatch.setattr(accounts_module, "PASSWORD_COSTS", CHEAP)
    return app_env


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in (at.title, at.markdown, at.info, at.error, at.success, at.caption) for e in kind]
    parts += [e.value for e in at.sidebar.markdown]
    return "\n".join(str(p) for p in parts)


def _shows_editor(at: AppTest) -> bool:
    return any(EDITOR_GREETING in i.value for i in at.info)


def _shows_sign_in(at: AppTest) -> bool:
    return any(t.value == "Sign in to ChatEdit" for t in at.title) and not _shows_editor(at)


def _submit(at: AppTest, label: str) -> AppTest:
    [button] = [b for b in at.button if b.label == label]
    return button.click().run()


def _sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="signin_name").input(name)
    at.text_input(key="signin_password").input(password)
    return _submit(at, "Sign in")


# ---------------------------------------------------------------------- the sign-in page


def test_without_a_session_only_the_sign_in_page_shows(local_sign_in: Services) -> None:
    make_team(local_sign_in)
    at = open_app_as(None)
    assert not at.exception, at.exception
    assert _shows_sign_in(at)
    assert [w.label for w in at.text_input] == ["Name", "Password"]
    assert "Signed in as" not in _texts(at)


def test_a_good_password_signs_in_and_a_wrong_one_says_so(local_sign_in: Services) -> None:
    make_team(local_sign_in)
    at = open_app_as(None)
    _sign_in(at, "ed", "not the password")
    assert "The name or the password is wrong." in [e.value for e in at.error]
    assert _shows_sign_in(at)

    _sign_in(at, "ed", PASSWORD)
    assert not at.exception, at.exception
    assert _shows_editor(at)
    assert "Signed in as **Ed** (editor)" in [m.value for m in at.sidebar.markdown]
    assert session_actor(local_sign_in, at.session_state[SESSION_TOKEN_KEY]).name == "ed"


def test_repeated_failures_are_throttled_with_a_wait_in_seconds(local_sign_in: Services) -> None:
    make_team(local_sign_in)
    at = open_app_as(None)
    for _ in range(accounts_module.FREE_FAILURES):
        _sign_in(at, "ed", "wrong password")
        assert [e.value for e in at.error] == ["The name or the password is wrong."]
    # Five more failures just now (written directly: through the page each would first wait its delay).
    with local_sign_in.database.write_session() as session:
        for _ in range(5):
            record_audit(session, None, "sign_in.failed", "sign_in", "ed", {}, utcnow())
    _sign_in(at, "ed", PASSWORD)  # even the right password waits
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Too many failed sign-ins as ed; try again in ")
    assert errors[0].endswith(" s.") and _shows_sign_in(at)


def test_an_expired_or_revoked_session_shows_the_sign_in_page(local_sign_in: Services) -> None:
    team = make_team(local_sign_in)
    long_ago = utcnow() - timedelta(hours=local_sign_in.settings.session_hours + 1)
    expired = Accounts(local_sign_in, clock=lambda: long_ago).start_session(team.editor)
    assert _shows_sign_in(open_app_as(expired))

    token = team.token(team.editor)
    at = open_app_as(token)
    assert _shows_editor(at)
    team.accounts.end_session(token)  # e.g. signed out in another tab
    at.run()
    assert _shows_sign_in(at)


def test_a_disabled_account_stops_at_the_next_click(local_sign_in: Services) -> None:
    team = make_team(local_sign_in)
    at = open_app_as(team.token(team.editor))
    assert _shows_editor(at)
    team.accounts.disable(team.admin, "ed")
    at.run()
    assert _shows_sign_in(at)
    _sign_in(at, "ed", PASSWORD)
    assert "The account ed is disabled; ask an admin to enable it." in [e.value for e in at.error]


def test_sign_out_ends_the_session_on_the_server(local_sign_in: Services) -> None:
    team = make_team(local_sign_in)
    token = team.token(team.reviewer)
    at = open_app_as(token)
    assert "Signed in as **Rita** (reviewer)" in [m.value for m in at.sidebar.markdown]
    at.sidebar.button(key="signin_sign_out").click().run()
    assert _shows_sign_in(at)
    assert session_actor(local_sign_in, token) is None  # a copy of the token signs nobody in now
    assert _shows_sign_in(open_app_as(token))


def test_changing_the_password(local_sign_in: Services) -> None:
    team = make_team(local_sign_in)
    old_token = team.token(team.editor)
    at = open_app_as(old_token)
    new_password = "a brand new secret"

    def change(current: str, new: str, again: str) -> None:
        at.text_input(key="signin_current_password").input(current)
        at.text_input(key="signin_new_password").input(new)
        at.text_input(key="signin_repeated_password").input(again)
        _submit(at, "Change password")

    change("wrong current", new_password, new_password)
    assert "The current password is wrong; nothing was changed." in [e.value for e in at.error]
    change(PASSWORD, new_password, "something else")
    assert "The two new passwords differ; type the same one twice." in [e.value for e in at.error]
    change(PASSWORD, new_password, new_password)
    assert "Your password is changed; your other sign-ins have ended." in [s.value for s in at.success]
    at.run()
    assert _shows_editor(at)  # this browser stays signed in (a new session) ...
    assert session_actor(local_sign_in, old_token) is None  # ... other sign-ins ended

    fresh = open_app_as(None)
    _sign_in(fresh, "ed", PASSWORD)
    assert "The name or the password is wrong." in [e.value for e in fresh.error]
    _sign_in(fresh, "ed", new_password)
    assert _shows_editor(fresh)


def test_an_account_without_a_password_is_not_offered_a_password_change(local_sign_in: Services) -> None:
    team = make_team(local_sign_in)
    team.accounts.set_password(team.admin, "vic", None)
    at = open_app_as(team.token(team.viewer))
    assert "Signed in as **Vic** (viewer)" in [m.value for m in at.sidebar.markdown]
    assert not [e for e in at.sidebar.expander if e.label == "Change password"]


def test_the_first_run_page_creates_the_admin_who_owns_the_old_histories(local_sign_in: Services) -> None:
    services = local_sign_in
    stored = store_upload(services, sample_png("Portrait"))
    made_while_off = start_history(services, stored.id, title="Before sign-in").history_id

    at = open_app_as(None)
    assert [t.value for t in at.title] == ["Create the first admin"]
    at.text_input(key="signin_first_name").input("ada")
    at.text_input(key="signin_first_display").input("Ada Lovelace")
    at.text_input(key="signin_first_password").input(PASSWORD)
    at.text_input(key="signin_first_repeated").input("a different one")
    _submit(at, "Create the first admin")
    assert "The two passwords differ; type the same one twice." in [e.value for e in at.error]

    at.text_input(key="signin_first_repeated").input(PASSWORD)
    _submit(at, "Create the first admin")
    assert not at.exception, at.exception
    assert "Signed in as **Ada Lovelace** (admin)" in [m.value for m in at.sidebar.markdown]
    ada = session_actor(services, at.session_state[SESSION_TOKEN_KEY])
    assert ada is not None and ada.role == "admin"
    owners = {h.id: h.owner_id for h in list_histories(services, viewer=ada)}
    assert owners[made_while_off] == ada.id

    # Once someone can sign in, a new visitor gets the sign-in page, not a second first-run page.
    assert _shows_sign_in(open_app_as(None))


def test_two_people_racing_on_the_first_run_page_make_one_admin(services: Services,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The first-run page is open to whoever comes first: two submissions at once must not make two admins."""
    import threading

    from jobs.services.accounts import AccountError
    from jobs.services.sign_in import create_first_admin

    monkeypatch.setattr(accounts_module, "PASSWORD_COSTS", CHEAP)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def first_run(name: str) -> None:
        barrier.wait()
        try:
            create_first_admin(services, name, name.title(), PASSWORD, PASSWORD)
            outcomes.append("admin")
        except AccountError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=first_run, args=(name,)) for name in ("ada", "mallory")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["An account that can sign in exists already; sign in, and ask an admin for an "
                                "account.", "admin"]
    admins = [a for a in Accounts(services).list_users(local_actor(services)) if a.role == "admin" and a.has_password]
    assert len(admins) == 1


def test_sign_in_off_is_the_local_admin_without_a_sign_in_page(app_env: Services) -> None:
    at = open_app_as(None)
    assert not at.exception, at.exception
    assert _shows_editor(at)
    assert not any(t.value == "Sign in to ChatEdit" for t in at.title)
    assert "Signed in as" not in _texts(at)
    assert not [b for b in at.sidebar.button if b.key == "signin_sign_out"]


def test_with_oidc_and_local_each_provider_has_a_button_beside_the_password_form(local_sign_in: Services,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATEDIT_AUTH", "local,oidc")
    make_team(local_sign_in)
    at = AppTest.from_file(ENTRY, default_timeout=60)
    provider = {"client_id": "chatedit", "client_secret": "s", "server_metadata_url": "https://id.test/.well-known"}
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 32,
                          "okta": provider, "google": provider}
    at.run()
    assert not at.exception, at.exception
    assert [b.label for b in at.button if b.label.startswith("Sign in with")] == ["Sign in with okta",
                                                                                 "Sign in with google"]
    assert [w.label for w in at.text_input] == ["Name", "Password"]


def test_oidc_without_a_provider_in_the_secrets_says_what_to_configure(local_sign_in: Services,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATEDIT_AUTH", "oidc")
    at = open_app_as(None)
    assert not at.exception, at.exception
    assert _shows_sign_in(at) and "no provider is configured" in at.error[0].value
    assert not at.text_input  # no password form, and no first-run page: local accounts are off


# ---------------------------------------------------------------------- OIDC accounts


def _claims(sub: str, **more: object) -> dict[str, object]:
    return {"iss": ISSUER, "sub": sub, **more}


def test_a_new_oidc_person_gets_the_default_role(services: Services) -> None:
    actor = oidc_sign_in(services, _claims("123", preferred_username="bea", name="Bea Tester",
                                           email="Bea@Example.com"))
    assert (actor.name, actor.display_name, actor.role) == ("bea", "Bea Tester", "viewer")
    account = Accounts(services).get_user(local_actor(services), "bea")
    assert account.email == "bea@example.com" and account.last_sign_in_at is not None
    entries = Accounts(services).audit_entries(local_actor(services))
    assert {"user.created", "sign_in.oidc"} <= {e.action for e in entries}


def test_the_same_issuer_and_subject_is_the_same_account(services: Services) -> None:
    first = oidc_sign_in(services, _claims("123", preferred_username="bea"))
    again = oidc_sign_in(services, _claims("123", preferred_username="renamed", email="new@example.com"))
    assert again.id == first.id and again.name == "bea"
    # Another provider's subject 123 is another person, and the name stays unique.
    other = oidc_sign_in(services, {"iss": "https://other.example.org", "sub": "123", "preferred_username": "bea"})
    assert other.id != first.id and other.name == "bea-2"


def test_a_name_falls_back_to_the_address_then_the_subject(services: Services) -> None:
    assert oidc_sign_in(services, _claims("1", email="carl.x@example.com")).name == "carl.x"
    assert oidc_sign_in(services, _claims("user|42")).name == "user-42"


def test_the_role_is_mapped_from_a_claim(services: Services) -> None:
    mapping = {"chatedit-admins": "admin", "chatedit-reviewers": "reviewer"}
    with services_with(services.settings, oidc_role_claim="groups", oidc_role_map=mapping) as svc:
        reviewer = oidc_sign_in(svc, _claims("r", groups=["staff", "chatedit-reviewers"]))
        admin = oidc_sign_in(svc, _claims("a", groups=["chatedit-reviewers", "chatedit-admins"]))
        single = oidc_sign_in(svc, _claims("s", groups="chatedit-reviewers"))
        unmapped = oidc_sign_in(svc, _claims("u", groups=["staff"]))
    assert (reviewer.role, admin.role, single.role, unmapped.role) == ("reviewer", "admin", "reviewer", "viewer")
    assert role_from_claims({"groups": None}, "groups", mapping) is None


def test_only_allowed_email_domains_may_sign_in(services: Services) -> None:
    with services_with(services.settings, oidc_allowed_domains=["example.com"]) as svc:
        assert oidc_sign_in(svc, _claims("ok", email="ok@example.com")).role == "viewer"
        with pytest.raises(OidcRefused, match="Only people with an e-mail address at example.com may sign in, "
                                              "not mallory@evil.test."):
            oidc_sign_in(svc, _claims("m", email="mallory@evil.test"))
        with pytest.raises(OidcRefused, match="the provider gave no address"):
            oidc_sign_in(svc, _claims("n"))
        with pytest.raises(OidcRefused, match="has not verified the address"):
            oidc_sign_in(svc, _claims("v", email="v@example.com", email_verified=False))
    admin = local_actor(services)
    assert [a.name for a in Accounts(services).list_users(admin) if a.name != "local"] == ["ok"]


def test_a_disabled_oidc_account_is_refused(services: Services) -> None:
    person = oidc_sign_in(services, _claims("123", preferred_username="bea"))
    Accounts(services).disable(local_actor(services), "bea")
    with pytest.raises(OidcRefused, match="The account bea is disabled; ask an admin to enable it."):
        oidc_sign_in(services, _claims("123"))
    assert not actor_for(services, person.id).active


def test_an_email_of_another_account_is_not_joined_to_it(services: Services) -> None:
    team = make_team(services)
    team.accounts.create_user(team.admin, "bob", email="bob@example.com", password=PASSWORD)
    stranger = oidc_sign_in(services, _claims("x", preferred_username="bob", email="bob@example.com"))
    assert stranger.name == "bob-2" and stranger.role == "viewer"
    assert team.accounts.get_user(team.admin, "bob-2").email is None


# ---------------------------------------------------------------------- `chatedit serve` off loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"])
def test_serving_on_loopback_needs_nothing(services: Services, host: str) -> None:
    assert open_access_warning(services.settings, host) is None


def test_serving_beyond_loopback_with_sign_in_off_is_refused_or_warned(services: Services) -> None:
    with pytest.raises(click.ClickException) as refused:
        open_access_warning(services.settings, "0.0.0.0")
    assert "CHATEDIT_ALLOW_OPEN_ACCESS=true" in refused.value.message
    assert "CHATEDIT_AUTH=local" in refused.value.message
    with services_with(services.settings, allow_open_access=True) as svc:
        warning = open_access_warning(svc.settings, "0.0.0.0")
    assert warning is not None and "anyone who reaches this port acts as the admin" in warning
    with services_with(services.settings, auth="local") as svc:
        assert open_access_warning(svc.settings, "0.0.0.0") is None


def test_serve_refuses_before_starting_anything(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from app.cli import cli

    monkeypatch.setenv("CHATEDIT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("CHATEDIT_DATABASE_URL", services.settings.resolved_database_url)
    monkeypatch.setenv("CHATEDIT_AUTH", "off")
    monkeypatch.delenv("CHATEDIT_ALLOW_OPEN_ACCESS", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "CHATEDIT_ALLOW_OPEN_ACCESS=true" in result.output and "Database ready" not in result.output
