"""Who may do what: one table maps each role to its permissions, and ``require`` is the one check.

Every door (pages, the HTTP API, the command line) asks ``require`` before it acts for a
person; nothing else decides. A permission ending in ``_own`` covers objects the person
owns (an object with an ``owner_id``); the broader permission beside it in :data:`BROADER`
covers everyone's. A disabled account may do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.models import LOCAL_USER_ID, USER_ROLES, User
from jobs.services import Services

#: Every permission, with what it allows in words a sentence can use ("Bea (viewer) may not submit jobs.").
PERMISSIONS: dict[str, str] = {
    "jobs.submit": "submit jobs",
    "history.read_own": "read their own histories",
    "history.read_team": "read the team's histories",
    "history.read_private": "read other people's private histories",
    "history.write_own": "change their own histories",
    "history.write_any": "change other people's histories",
    "review.decide": "approve or reject steps",
    "review.comment": "comment on steps",
    "users.manage": "manage accounts",
    "datasets.manage": "manage datasets",
    "training.run": "run fine-tuning",
    "settings.own": "change their own settings",
}

#: The one table of roles: everything else (pages, the README's list) derives from it.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS),
    # settings.own: a person's settings are their editing defaults, which only matter to someone who edits.
    "editor": frozenset({"jobs.submit", "history.read_own", "history.write_own", "history.read_team",
                         "review.comment", "settings.own"}),
    "reviewer": frozenset({"history.read_team", "review.decide", "review.comment"}),
    "viewer": frozenset({"history.read_team"}),
}

#: An ``_own`` permission and the one that covers other people's objects as well.
BROADER: dict[str, str] = {
    "history.write_own": "history.write_any",
}

#: Permissions asked of a history, resolved by whose it is and who may see it (:func:`concrete_permission`):
#: reading your own needs ``history.read_own``, a team history ``history.read_team``, someone else's private
#: one ``history.read_private``; changing your own ``history.write_own``, anyone else's ``history.write_any``.
OBJECT_PERMISSIONS: dict[str, str] = {
    "history.read": "read this history",
    "history.write": "change this history",
}

#: What each role is for, in a few words (the README and the accounts page show it beside the permissions).
ROLE_SUMMARIES: dict[str, str] = {
    "admin": "everything, accounts included",
    "editor": "edits their own histories and reads and comments on the team's",
    "reviewer": "reads the team's histories and approves, rejects and comments on steps",
    "viewer": "reads the team's histories, nothing else",
}

assert set(ROLE_PERMISSIONS) == set(USER_ROLES) == set(ROLE_SUMMARIES), "every role has one entry"
assert all(p <= set(PERMISSIONS) for p in ROLE_PERMISSIONS.values()), "roles name known permissions only"


@dataclass(frozen=True)
class Actor:
    """The person a request is made for, as the permission check sees them."""

    id: int
    name: str
    display_name: str
    role: str
    active: bool = True

    @property
    def label(self) -> str:
        """How a sentence names the person."""
        return self.display_name or self.name

    @classmethod
    def of(cls, user: User) -> Actor:
        assert user.id is not None
        return cls(id=user.id, name=user.name, display_name=user.display_name, role=user.role, active=user.active)


class UnknownUser(LookupError):
    def __init__(self, user: int | str) -> None:
        what = f"number {user}" if isinstance(user, int) else f"named {user!r}"
        super().__init__(f"There is no user {what}.")
        self.user = user


class PermissionDenied(Exception):
    """``actor`` may not do ``permission`` (to ``obj``, when given); the message is a sentence for them."""

    def __init__(self, actor: Actor, permission: str, obj: Any = None) -> None:
        sentence = f"{actor.label} ({actor.role}) may not {PERMISSIONS[permission]}"
        if obj is not None:
            sentence += f" ({_describe(obj)})"
        sentence += ": the account is disabled." if not actor.active else "."
        super().__init__(sentence)
        self.actor = actor
        self.permission = permission
        self.obj = obj


def _describe(obj: Any) -> str:
    kind = type(obj).__name__.lower().removesuffix("record")
    number = getattr(obj, "id", None)
    owner = getattr(obj, "owner_id", None)
    text = kind if number is None else f"{kind} {number}"
    return text if owner is None else f"{text}, owned by user {owner}"


def concrete_permission(actor: Actor, permission: str, obj: Any) -> str:
    """The table's permission that ``permission`` on ``obj`` means for ``actor`` (see :data:`OBJECT_PERMISSIONS`)."""
    if permission not in OBJECT_PERMISSIONS:
        return permission
    if obj is None:
        raise ValueError(f"{permission!r} is asked of a history: pass the history.")
    own = getattr(obj, "owner_id", None) == actor.id
    if permission == "history.write":
        return "history.write_own" if own else "history.write_any"
    if own:
        return "history.read_own"
    return "history.read_team" if getattr(obj, "visibility", "private") == "team" else "history.read_private"


def allowed(actor: Actor, permission: str, obj: Any = None) -> bool:
    """Whether ``actor`` may do ``permission`` (to ``obj``); see :func:`require`."""
    permission = concrete_permission(actor, permission, obj)
    if permission not in PERMISSIONS:
        raise KeyError(f"There is no permission {permission!r}; the permissions are {', '.join(PERMISSIONS)}.")
    if not actor.active:
        return False
    granted = ROLE_PERMISSIONS.get(actor.role, frozenset())
    broader = BROADER.get(permission)
    if broader is not None and broader in granted:
        return True
    if permission not in granted:
        return False
    if permission.endswith("_own") and obj is not None:
        return getattr(obj, "owner_id", None) == actor.id
    return True


def require(actor: Actor, permission: str, obj: Any = None) -> None:
    """Raise :class:`PermissionDenied` unless ``actor`` may do ``permission`` (to ``obj``).

    With an ``obj``, an ``_own`` permission holds only for the object's owner (its
    ``owner_id``), unless the actor's role has the broader permission as well; ``history.read``
    and ``history.write`` become the table's permission for that history (:func:`concrete_permission`).
    """
    if not allowed(actor, permission, obj):
        raise PermissionDenied(actor, concrete_permission(actor, permission, obj), obj)


def actor_for(services: Services, user_id: int) -> Actor:
    """The person with id ``user_id`` as they are now (role and active state read from the database)."""
    with services.database.session() as session:
        user = session.get(User, user_id)
    if user is None:
        raise UnknownUser(user_id)
    return Actor.of(user)


def local_actor(services: Services) -> Actor:
    """The local admin: whom the app and the command line act for while sign-in is off."""
    return actor_for(services, LOCAL_USER_ID)
