"""The Accounts page: admins create people, change their roles, disable or enable them, set passwords,
and read the audit log and the sign-ins of the last two weeks.

Every change goes through ``jobs.services.accounts.Accounts``, which checks ``users.manage`` again
and writes the audit row; the page only shows and asks. A change made draws the page again, so the
table shows it; a refusal is a sentence below the form, and what was typed stays in the form.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import altair as alt
import pandas as pd
import streamlit as st

from app.ui.common import get_services, when
from app.ui.identity import require_page
from db.models import USER_ROLES
from jobs.services.accounts import Account, AccountError, Accounts, AuditRecord
from jobs.services.permissions import PERMISSIONS, ROLE_PERMISSIONS, ROLE_SUMMARIES, Actor, PermissionDenied

#: Session keys: the sentence of the last change made (shown once on the next run), and flags that empty a form.
DONE_KEY = "accounts_done"
CLEAR_CREATE, CLEAR_PASSWORD = "accounts_clear_create", "accounts_clear_password"
#: The create form's fields (session-state keys) and their labels.
CREATE_FIELDS = {"accounts_new_name": "User name", "accounts_new_display": "Display name",
                 "accounts_new_email": "E-mail"}
NEW_ROLE, NEW_PASSWORD, NEW_PASSWORD_AGAIN = "accounts_new_role", "accounts_new_password", "accounts_new_password2"
PICK = "accounts_pick"
SET_PASSWORD, SET_PASSWORD_AGAIN = "accounts_set_password", "accounts_set_password2"
#: How many audit entries the page shows, and over how many days it counts sign-ins.
AUDIT_ROWS = 50
SIGN_IN_DAYS = 14


def render() -> None:
    actor = require_page("users.manage", "The Accounts page is for admins.")
    service = Accounts(get_services())
    st.title("Accounts")
    done = st.session_state.pop(DONE_KEY, None)
    if done:
        st.success(done)
    people = service.list_users(actor)
    _accounts_table(people)
    left, right = st.columns(2)
    with left:
        _create_form(service, actor)
    with right:
        _change_forms(service, actor, people)
    _roles()
    _audit(service, actor, people)
    _sign_ins(service, actor)


# ---------------------------------------------------------------------- the accounts


def _accounts_table(people: list[Account]) -> None:
    st.table([{"name": a.name, "display name": a.display_name, "e-mail": a.email or "", "role": a.role,
               "active": "yes" if a.active else "disabled", "password": "yes" if a.has_password else "no",
               "last sign-in": when(a.last_sign_in_at) if a.last_sign_in_at else "never"} for a in people])


def _attempt(change: Callable[[], str]) -> None:
    """Make ``change()``; done, the page is drawn again showing its sentence; refused, the sentence shows here.

    Changes run in the page (not in widget callbacks, which Streamlit runs before the sign-in gate),
    so each is made for the person the gate has just read again from the database.
    """
    try:
        done = change()
    except (AccountError, PermissionDenied, LookupError) as exc:
        st.error(str(exc))
        return
    st.session_state[DONE_KEY] = done
    st.rerun()


def _empty(*keys: str, flag: str) -> None:
    """Empty a form's fields after a change was made: on the next run, before its widgets exist (Streamlit's rule)."""
    if st.session_state.pop(flag, False):
        for key in keys:
            st.session_state[key] = ""


def _create_form(service: Accounts, actor: Actor) -> None:
    st.subheader("New account")
    _empty(*CREATE_FIELDS, NEW_PASSWORD, NEW_PASSWORD_AGAIN, flag=CLEAR_CREATE)
    state = st.session_state
    with st.form("accounts_create"):
        for key, label in CREATE_FIELDS.items():
            st.text_input(label, key=key)
        state.setdefault(NEW_ROLE, "editor")
        st.selectbox("Role", USER_ROLES, key=NEW_ROLE, format_func=lambda role: f"{role}: {ROLE_SUMMARIES[role]}")
        st.text_input("Initial password (empty: none, e.g. for single sign-on)", type="password", key=NEW_PASSWORD)
        st.text_input("The password again", type="password", key=NEW_PASSWORD_AGAIN)
        submitted = st.form_submit_button("Create account", key="accounts_create_submit")
    if not submitted:
        return

    def change() -> str:
        password = state.get(NEW_PASSWORD, "")
        if password != state.get(NEW_PASSWORD_AGAIN, ""):
            raise AccountError("The two passwords differ; type the same password twice.")
        account = service.create_user(actor, state.get("accounts_new_name", "").strip(), role=state[NEW_ROLE],
                                      email=state.get("accounts_new_email") or None,
                                      display_name=state.get("accounts_new_display", ""), password=password or None)
        state[CLEAR_CREATE] = True
        how = "with a password" if account.has_password else "without a password"
        return f"Created {account.name} ({account.role}) {how}."

    _attempt(change)


def _change_forms(service: Accounts, actor: Actor, people: list[Account]) -> None:
    st.subheader("Change an account")
    _empty(SET_PASSWORD, SET_PASSWORD_AGAIN, flag=CLEAR_PASSWORD)
    state = st.session_state
    by_name = {a.name: a for a in people}
    if state.get(PICK) not in by_name:
        state.pop(PICK, None)
    name = st.selectbox("Account", list(by_name), key=PICK,
                        format_func=lambda n: f"{by_name[n].display_name or n} ({n}, {by_name[n].role}"
                                              f"{'' if by_name[n].active else ', disabled'})")
    account = by_name[name]
    role_key = f"accounts_role_{account.name}"  # per person: picking another shows that person's role
    with st.form("accounts_role"):
        st.selectbox("Role", USER_ROLES, index=USER_ROLES.index(account.role), key=role_key)
        changed = st.form_submit_button("Change role", key="accounts_role_submit")
    if changed:
        _attempt(lambda: f"{name} is now {service.set_role(actor, name, state[role_key]).role}.")
    verb = "Disable" if account.active else "Enable"
    if st.button(f"{verb} {account.name}", key="accounts_toggle",
                 help="A disabled account may do nothing and its sessions end; its histories stay." if account.active
                 else "The account may sign in and act again, as its role allows."):
        _attempt(lambda: f"{service.disable(actor, name).name} is disabled; its sessions have ended."
                 if account.active else f"{service.enable(actor, name).name} is enabled.")
    with st.form("accounts_password"):
        st.text_input(f"New password for {account.name}", type="password", key=SET_PASSWORD)
        st.text_input("The new password again", type="password", key=SET_PASSWORD_AGAIN)
        submitted = st.form_submit_button("Set password", key="accounts_password_submit")
    if not submitted:
        return

    def change() -> str:
        password = state.get(SET_PASSWORD, "")
        if not password:
            raise AccountError("Type the new password (twice).")
        if password != state.get(SET_PASSWORD_AGAIN, ""):
            raise AccountError("The two passwords differ; type the same password twice.")
        service.set_password(actor, name, password)
        state[CLEAR_PASSWORD] = True
        return f"The password of {name} is set; its sessions have ended."

    _attempt(change)


# ---------------------------------------------------------------------- roles, audit log, sign-ins


def _roles() -> None:
    st.subheader("Roles")
    st.table([{"role": role, "for": ROLE_SUMMARIES[role],
               "may": ", ".join(PERMISSIONS[p] for p in PERMISSIONS if p in ROLE_PERMISSIONS[role])}
              for role in USER_ROLES])


def _audit(service: Accounts, actor: Actor, people: list[Account]) -> None:
    st.subheader("Audit log")
    entries = service.audit_entries(actor, limit=AUDIT_ROWS)
    if not entries:
        st.caption("Nothing has been recorded yet.")
        return
    labels = {a.id: a.display_name or a.name for a in people}
    names = {a.id: a.name for a in people}  # an object is named by its unique name
    st.caption(f"The newest {len(entries)} entries, newest first.")
    st.table([{"when": when(e.at), "who": _who(e, labels), "what": e.action, "which": _which(e, names),
               "detail": _detail(e)} for e in entries])


def _who(entry: AuditRecord, names: dict[int, str]) -> str:
    if entry.actor_id is None:
        return "nobody signed in"
    return names.get(entry.actor_id, f"user {entry.actor_id}")


def _which(entry: AuditRecord, names: dict[int, str]) -> str:
    if entry.object_type == "user" and entry.object_id and entry.object_id.isdigit():
        return f"user {names.get(int(entry.object_id), entry.object_id)}"
    if entry.object_type == "sign_in":
        return f"sign-in as {entry.object_id}"
    return f"{entry.object_type} {entry.object_id or ''}".strip()


def _detail(entry: AuditRecord) -> str:
    if not entry.detail:
        return ""
    return json.dumps(entry.detail, ensure_ascii=False, default=str)[:200]


def _sign_ins(service: Accounts, actor: Actor) -> None:
    st.subheader(f"Sign-ins, last {SIGN_IN_DAYS} days")
    counts = service.sign_in_counts(actor, SIGN_IN_DAYS)
    rows = [{"day": day.isoformat(), "outcome": outcome, "count": n}
            for day, ok, failed in counts for outcome, n in (("succeeded", ok), ("failed", failed))]
    if not any(r["count"] for r in rows):
        st.caption("No one signed in with a password in this time.")
    chart = alt.Chart(pd.DataFrame(rows, columns=["day", "outcome", "count"])).mark_bar().encode(
        x=alt.X("day:O", title=None),
        y=alt.Y("count:Q", title="sign-ins", stack=True),
        color=alt.Color("outcome:N", scale=alt.Scale(domain=["succeeded", "failed"], range=["#4c9a5b", "#c8553d"]),
                        title=None),
        tooltip=["day:O", "outcome:N", "count:Q"],
    )
    st.altair_chart(chart, width="stretch")
