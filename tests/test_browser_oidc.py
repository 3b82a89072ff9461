"""Signing in through a real browser: an OpenID provider started in the test (offline), and a local password.

OIDC: `chatedit serve` with CHATEDIT_AUTH=oidc and Streamlit's secrets naming the provider that
oidc-provider-mock runs in a thread; chromium clicks "Sign in with mock", types the subject on the
provider's page and comes back signed in, as a new account with the default role.
Local: a password sign-in survives a reload of the page (the cookie), and sign-out ends it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from core.settings import load_settings
from jobs.services import Services
from jobs.services.accounts import Accounts, make_password_hasher
from jobs.services.permissions import local_actor
from tests.browser_support import browser_page, keep_screenshots, serving, shot, wait_idle
from tests.team_support import CHEAP, PASSWORD

pytestmark = pytest.mark.slow

BEA = {"email": "bea@example.com", "email_verified": True, "name": "Bea Tester", "preferred_username": "bea"}


def _secrets(path: Path, provider_url: str) -> Path:
    """Streamlit's secrets for one provider named "mock"; {port} is the app's port (Streamlit fills it in)."""
    path.write_text(f"""
[auth]
redirect_uri = "http://127.0.0.1:{{port}}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"

[auth.mock]
client_id = "chatedit"
client_secret = "not-a-secret"
server_metadata_url = "{provider_url}/.well-known/openid-configuration"
""")
    return path


def _services(data_dir: Path) -> Services:
    return Services.from_settings(load_settings(data_dir=data_dir))


def test_a_new_person_signs_in_through_the_openid_provider(tmp_path: Path) -> None:
    from oidc_provider_mock import User, run_server_in_thread
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    with run_server_in_thread(user_claims=[User(sub="bea-123", claims=BEA)]) as provider:
        provider_url = f"http://localhost:{provider.server_port}"
        secrets_file = _secrets(tmp_path / "secrets.toml", provider_url)
        with (serving(tmp_path, extra_env={"STREAMLIT_SECRETS_FILES": str(secrets_file)}, auth="oidc")
              as (url, data_dir), browser_page(shots) as page):
            page.goto(url)
            expect(page.get_by_role("heading", name="Sign in to ChatEdit")).to_be_visible()
            expect(page.get_by_text("Upload a photo or pick a sample image")).to_have_count(0)
            page.get_by_role("button", name="Sign in with mock").click()

            page.wait_for_url(f"{provider_url}/oauth2/authorize*")  # the provider's own page
            page.locator('input[name="sub"]').fill("bea-123")
            page.get_by_role("button", name="Authorize").click()

            page.wait_for_url(f"{url}/**")
            expect(page.get_by_text("Signed in as Bea Tester (viewer)")).to_be_visible()
            wait_idle(page)
            shot(page, shots / "signed-in-oidc.png")

            services = _services(data_dir)
            try:
                account = Accounts(services).get_user(local_actor(services), "bea")
            finally:
                services.close()
            assert (account.role, account.display_name, account.email) == ("viewer", "Bea Tester", "bea@example.com")
            assert not account.has_password and account.last_sign_in_at is not None

            page.get_by_role("button", name="Sign out").click()  # ours, then the provider's
            page.wait_for_url(f"{provider_url}/oauth2/end_session*")
            page.get_by_role("button", name="End session").click()
            expect(page.get_by_role("heading", name="Sign in to ChatEdit")).to_be_visible()
            services = _services(data_dir)
            try:
                actions = [e.action for e in Accounts(services).audit_entries(local_actor(services))]
            finally:
                services.close()
            assert actions.index("session.ended") < actions.index("session.started")  # newest first
    keep_screenshots(shots)


def test_a_person_from_a_domain_not_allowed_is_told_why(tmp_path: Path) -> None:
    from oidc_provider_mock import User, run_server_in_thread
    from playwright.sync_api import expect

    with run_server_in_thread(user_claims=[User(sub="bea-123", claims=BEA)]) as provider:
        provider_url = f"http://localhost:{provider.server_port}"
        secrets_file = _secrets(tmp_path / "secrets.toml", provider_url)
        with (serving(tmp_path, extra_env={"STREAMLIT_SECRETS_FILES": str(secrets_file)}, auth="oidc",
                      oidc_allowed_domains='["chatedit.test"]') as (url, data_dir),
              browser_page(tmp_path / "screenshots") as page):
            page.goto(url)
            page.get_by_role("button", name="Sign in with mock").click()
            page.locator('input[name="sub"]').fill("bea-123")
            page.get_by_role("button", name="Authorize").click()
            expect(page.get_by_text("Only people with an e-mail address at chatedit.test may sign in, "
                                    "not bea@example.com.")).to_be_visible()
            expect(page.get_by_text("Signed in as")).to_have_count(0)
            expect(page.get_by_text("Upload a photo or pick a sample image")).to_have_count(0)
            services = _services(data_dir)
            try:
                names = [a.name for a in Accounts(services).list_users(local_actor(services))]
            finally:
                services.close()
            assert names == ["local"]


def test_a_password_sign_in_survives_a_reload_until_sign_out(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    with serving(tmp_path, auth="local") as (url, data_dir), browser_page(shots) as page:
        services = _services(data_dir)
        try:
            Accounts(services, passwords=make_password_hasher(CHEAP)).create_user(local_actor(services), "ada", role="admin", display_name="Ada", password=PASSWORD)
        finally:
            services.close()

        page.goto(url)
        expect(page.get_by_role("heading", name="Sign in to ChatEdit")).to_be_visible()
        page.get_by_role("textbox", name="Name", exact=True).fill("ada")
        page.get_by_role("textbox", name="Password", exact=True).fill("wrong password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("The name or the password is wrong.")).to_be_visible()
        wait_idle(page)
        shot(page, shots / "sign-in-refused.png")

        page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as Ada (admin)")).to_be_visible()
        wait_idle(page)
        # the browser writes the cookie when the page's script element mounts, a moment after the sidebar shows
        page.wait_for_function("document.cookie.includes('chatedit_session=')")

        page.reload()  # a new Streamlit session: only the cookie remembers who this is
        expect(page.get_by_text("Signed in as Ada (admin)")).to_be_visible()
        expect(page.get_by_text("Upload a photo or pick a sample image")).to_be_visible()

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in to ChatEdit")).to_be_visible()
        wait_idle(page)
        page.reload()
        expect(page.get_by_role("heading", name="Sign in to ChatEdit")).to_be_visible()
        expect(page.get_by_text("Signed in as")).to_have_count(0)
    keep_screenshots(shots)

