"""Who this browser session acts for: set once per run by ``app.ui.signin.gate``, read by every page.

The person is read again from the database on every run (``gate``), so a changed role, a
disabled account or a revoked session takes effect at the next click, not the next sign-in.
"""

from __future__ import annotations

import streamlit as st

from jobs.services.permissions import Actor, PermissionDenied, allowed, require

#: Session-state key of the local sign-in token (its sha256 is what the database keeps).
SESSION_TOKEN_KEY = "chatedit_session_token"
#: Session-state key of the person this run acts for (an ``Actor``), set by the gate.
ACTOR_KEY = "chatedit_actor"


class NotSignedIn(RuntimeError):
    """A page ran without the gate having decided who acts (a programming error, not a person's)."""


def set_actor(actor: Actor) -> None:
    st.session_state[ACTOR_KEY] = actor


def current_actor() -> Actor:
    """The person this run acts for (the local admin while sign-in is off)."""
    actor = st.session_state.get(ACTOR_KEY)
    if not isinstance(actor, Actor):
        raise NotSignedIn("No one is signed in: app.ui.signin.gate must run before a page.")
    return actor


def can(permission: str, obj: object = None) -> bool:
    """Whether the current person may ``permission`` (to ``obj``): what pages use to show or hide an action."""
    return allowed(current_actor(), permission, obj)


def require_page(permission: str, why: str) -> Actor:
    """The person this run acts for, if they may ``permission``; else the refusal and ``why``, and the page stops.

    The menu already leaves out a page someone may not use; this check answers a typed URL or a stale link.
    """
    actor = current_actor()
    try:
        require(actor, permission)
    except PermissionDenied as exc:
        st.error(f"{exc} {why}")
        st.stop()
    return actor
