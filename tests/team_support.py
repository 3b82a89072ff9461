"""A team of four (one per role) on a test's database, and the app opened as one of them.

Passwords are hashed with cheap Argon2 parameters: the tests are about who may do what, not
about the cost of a hash (tests/test_accounts.py covers that).
"""

from __future__ import annotations

from dataclasses import dataclass

from streamlit.testing.v1 import AppTest

from app.ui.identity import SESSION_TOKEN_KEY
from jobs.services import Services
from jobs.services.accounts import Accounts, ArgonCosts, make_password_hasher
from jobs.services.permissions import Actor, actor_for, local_actor
from tests.app_support import ENTRY

CHEAP = ArgonCosts(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Team:
    """Ada (admin), Ed (editor), Eve (a second editor), Rita (reviewer) and Vic (viewer); all with PASSWORD."""

    accounts: Accounts
    admin: Actor
    editor: Actor
    other_editor: Actor
    reviewer: Actor
    viewer: Actor

    def by_role(self) -> dict[str, Actor]:
        return {"admin": self.admin, "editor": self.editor, "reviewer": self.reviewer, "viewer": self.viewer}

    def token(self, actor: Actor) -> str:
        """A fresh sign-in session for ``actor`` (what the sign-in page stores after a good password)."""
        return self.accounts.start_session(actor)


def make_team(services: Services) -> Team:
    accounts = Accounts(services, passwords=make_password_hasher(CHEAP))
    local = local_actor(services)
    made = {}
    for name, role, display in (("ada", "admin", "Ada"), ("ed", "editor", "Ed"), ("eve", "editor", "Eve"),
                                ("rita", "reviewer", "Rita"), ("vic", "viewer", "Vic")):
        account = accounts.create_user(local, name, role=role, display_name=display, password=PASSWORD)
        made[name] = actor_for(services, account.id)
    return Team(accounts=accounts, admin=made["ada"], editor=made["ed"], other_editor=made["eve"],
                reviewer=made["rita"], viewer=made["vic"])


def open_app_as(token: str | None, page: str | None = None, **query: str) -> AppTest:
    """The app after its first run, signed in with ``token`` (None: nobody), switched to ``views/<page>.py``.

    Unlike ``open_app`` it does not fail on an exception: a refused page is what some tests look for.
    """
    at = AppTest.from_file(ENTRY, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    if token is not None:
        at.session_state[SESSION_TOKEN_KEY] = token
    at.run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    return at
