"""The sign-in gate: who acts in this run, or the sign-in page and nothing else of the app.

``CHATEDIT_AUTH=off``: the local admin acts, as before accounts existed. Otherwise the person's
session token (in ``st.session_state``, or the ``chatedit_session`` cookie after a reload) is
checked against the database on every run, so an expired or revoked session or a disabled
account stops working at the next click. People from an OpenID provider come through
Streamlit's own ``st.login`` / ``st.user`` / ``st.logout`` and get a session of ours too.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import streamlit as st

from app.ui.identity import SESSION_TOKEN_KEY, set_actor
from core.errors import error_line
from jobs.services import Services
from jobs.services.accounts import AccountError, SignInRefused
from jobs.services.permissions import Actor, local_actor
from jobs.services.sign_in import (
    SignedIn,
    accounts,
    change_own_password,
    create_first_admin,
    has_password,
    nobody_can_sign_in,
    oidc_sign_in,
    password_sign_in,
    session_actor,
    sign_out,
)

#: The cookie that keeps a local sign-in across a reload of the page (the token; the database has its hash).
COOKIE_NAME = "chatedit_session"
#: How this browser session signed in: "password" or "oidc" (sign-out then also signs out of the provider).
VIA_KEY = "chatedit_signed_in_via"
#: A sentence the sign-in page shows once (e.g. that signing out on the server failed).
NOTICE_KEY = "chatedit_sign_in_notice"


def gate(services: Services) -> Actor:
    """The person this run acts for; with sign-in on and nobody signed in, the sign-in page (and ``st.stop()``)."""
    methods = services.settings.auth_methods
    if not methods:
        actor = local_actor(services)
        set_actor(actor)
        return actor
    actor = _session_person(services)
    if actor is None and "oidc" in methods and _oidc_logged_in():
        actor = _oidc_person(services)
    if actor is None:
        _sign_in_page(services, methods)
    set_actor(actor)
    _remember_in_cookie(services, st.session_state[SESSION_TOKEN_KEY])
    _sidebar(services, actor)
    return actor


# ---------------------------------------------------------------------- who is signed in


def _session_person(services: Services) -> Actor | None:
    """The person of this browser's session token (session state first, then the cookie a reload sent)."""
    token = st.session_state.get(SESSION_TOKEN_KEY)
    if not token:
        token = _cookie_token()
        if token is None:
            return None
    actor = session_actor(services, token)
    if actor is None:
        st.session_state.pop(SESSION_TOKEN_KEY, None)
        return None
    st.session_state[SESSION_TOKEN_KEY] = token
    return actor


def _cookie_token() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE_NAME)
    except Exception:  # noqa: BLE001 - no browser request behind this run (a test harness): no cookie
        return None
    return value if isinstance(value, str) and value else None


def _oidc_logged_in() -> bool:
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # noqa: BLE001 - Streamlit without Authlib or secrets: nobody is signed in through it
        return False


def _oidc_person(services: Services) -> Actor | None:
    """Map the person ``st.user`` holds to an account and give them a session; refused: say why, and stop."""
    claims: dict[str, Any] = dict(st.user.to_dict())
    try:
        actor = oidc_sign_in(services, claims)
        token = accounts(services).start_session(actor)
    except SignInRefused as exc:
        _refused_page(str(exc))
    st.session_state[SESSION_TOKEN_KEY] = token
    st.session_state[VIA_KEY] = "oidc"
    return actor


# ---------------------------------------------------------------------- the sign-in page


def _refused_page(sentence: str) -> NoReturn:
    """The provider signed the person in, ChatEdit does not let them in: say why, offer to sign out there."""
    with _narrow():
        st.title("Sign in to ChatEdit")
        st.error(sentence)
        if st.button("Sign out, to sign in with another account", key="signin_oidc_refused_out"):
            st.logout()
    st.stop()


def _narrow() -> Any:
    """A column in the middle of the wide layout: a sign-in form need not span the screen."""
    return st.columns([1, 2, 1])[1]


def _sign_in_page(services: Services, methods: frozenset[str]) -> NoReturn:
    """The sign-in page (or the first-run page), and nothing else: the run stops here."""
    _forget_cookie()
    with _narrow():
        if "local" in methods and nobody_can_sign_in(services):
            _first_run_page(services)
            st.stop()
        st.title("Sign in to ChatEdit")
        notice = st.session_state.pop(NOTICE_KEY, None)
        if notice:
            st.error(notice)
        if "oidc" in methods:
            _provider_buttons()
        if "local" in methods:
            if "oidc" in methods:
                st.caption("Or sign in with a ChatEdit account:")
            _password_sign_in_form(services)
    st.stop()


def _password_sign_in_form(services: Services) -> None:
    with st.form("signin_form"):
        name = st.text_input("Name", key="signin_name")
        password = st.text_input("Password", type="password", key="signin_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            signed_in = password_sign_in(services, name, password)
        except SignInRefused as exc:
            st.error(str(exc))
        else:
            _signed_in(signed_in, "password")


def _provider_buttons() -> None:
    """One "Sign in with NAME" button per provider in Streamlit's secrets ([auth.NAME]), or the default one."""
    providers, default = _providers()
    if not providers and not default:
        st.error("Sign-in through an identity provider is on (CHATEDIT_AUTH includes oidc), but no provider is "
                 "configured: add an [auth] section with redirect_uri and cookie_secret, and [auth.NAME] with "
                 "client_id, client_secret and server_metadata_url, to .streamlit/secrets.toml.")
        return
    if default and st.button("Sign in with your organisation's account", key="signin_oidc_default", type="primary"):
        st.login()
    for name in providers:
        if st.button(f"Sign in with {name}", key=f"signin_oidc_{name}", type="primary"):
            st.login(name)


def _providers() -> tuple[list[str], bool]:
    """(named providers, whether [auth] itself names one) in Streamlit's secrets."""
    try:
        section = st.secrets.get("auth") or {}
    except Exception:  # noqa: BLE001 - no secrets file at all
        return [], False
    names = [key for key, value in section.items() if hasattr(value, "keys") and "client_id" in value]
    return names, "client_id" in section


def _first_run_page(services: Services) -> None:
    st.title("Create the first admin")
    st.write("Nobody can sign in to this ChatEdit yet. The account you create here is its admin: it makes the "
             "other accounts, and it takes over the histories made while sign-in was off.")
    with st.form("signin_first_admin"):
        name = st.text_input("Name (to sign in with)", key="signin_first_name")
        display_name = st.text_input("Display name (what others see)", key="signin_first_display")
        password = st.text_input("Password", type="password", key="signin_first_password")
        repeated = st.text_input("Password again", type="password", key="signin_first_repeated")
        submitted = st.form_submit_button("Create the first admin", type="primary")
    if submitted:
        try:
            signed_in = create_first_admin(services, name, display_name, password, repeated)
        except AccountError as exc:
            st.error(str(exc))
        else:
            _signed_in(signed_in, "password")


def _signed_in(signed_in: SignedIn, via: str) -> NoReturn:
    st.session_state[SESSION_TOKEN_KEY] = signed_in.token
    st.session_state[VIA_KEY] = via
    st.rerun()


# ---------------------------------------------------------------------- the sidebar block


def _sidebar(services: Services, actor: Actor) -> None:
    with st.sidebar:
        st.markdown(f"Signed in as **{_escape(actor.label)}** ({actor.role})")
        if st.button("Sign out", key="signin_sign_out", icon=":material/logout:"):
            _sign_out(services)
        if has_password(services, actor):
            with st.expander("Change password"):
                _password_form(services, actor)


def _password_form(services: Services, actor: Actor) -> None:
    with st.form("signin_change_password", clear_on_submit=True):
        current = st.text_input("Current password", type="password", key="signin_current_password")
        new = st.text_input("New password", type="password", key="signin_new_password")
        repeated = st.text_input("New password again", type="password", key="signin_repeated_password")
        submitted = st.form_submit_button("Change password")
    if submitted:
        try:
            token = change_own_password(services, actor, current, new, repeated)
        except (SignInRefused, AccountError) as exc:
            st.error(str(exc))
        else:
            st.session_state[SESSION_TOKEN_KEY] = token
            _remember_in_cookie(services, token)  # the old token in the cookie no longer signs anyone in
            st.success("Your password is changed; your other sign-ins have ended.")


def _sign_out(services: Services) -> NoReturn:
    try:
        sign_out(services, st.session_state.pop(SESSION_TOKEN_KEY, None))
    except Exception as exc:  # noqa: BLE001 - say it rather than show a traceback; the session state is cleared anyway
        st.session_state[NOTICE_KEY] = f"Signing out on the server failed ({error_line(exc)})."
    via = st.session_state.pop(VIA_KEY, None)
    if via == "oidc" and _oidc_logged_in():
        st.logout()  # Streamlit's cookie goes, and the browser goes to the provider to sign out there too
        st.stop()
    st.rerun()


# ---------------------------------------------------------------------- the cookie


def _remember_in_cookie(services: Services, token: str) -> None:
    """Keep the token in a cookie so a reload stays signed in (written by the browser: Streamlit sets none)."""
    if _cookie_token() == token:
        return
    max_age = services.settings.session_hours * 3600
    _run_script(f"document.cookie = {json.dumps(COOKIE_NAME)} + '=' + {json.dumps(token)} + "
                f"'; Path=/; Max-Age={max_age}; SameSite=Strict' + "
                "(location.protocol === 'https:' ? '; Secure' : '');")


def _forget_cookie() -> None:
    if _cookie_token() is not None:
        _run_script(f"document.cookie = {json.dumps(COOKIE_NAME)} + '=; Path=/; Max-Age=0; SameSite=Strict';")


def _run_script(script: str) -> None:
    # st.html runs the script in the page itself (not a sandboxed iframe), so the cookie is the app's.
    st.html(f"<script>{script}</script>", unsafe_allow_javascript=True)


def _escape(text: str) -> str:
    """Markdown-safe: a display name is the person's own text."""
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!|<>~$" else c for c in text)
