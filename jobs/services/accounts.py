"""Accounts, passwords and sign-in sessions: what every door calls to manage people and sign them in.

Every change made here is checked with ``jobs.services.permissions.require`` and appends a row to the
audit log in the same transaction, so the log never misses a change nor records one that
did not happen. Passwords are Argon2 hashes (pwdlib); a session token is shown to its owner
once and only its sha256 is stored. After repeated failed password checks for a name the
service answers "try again in N s" instead of checking: it decides, it never sleeps.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlmodel import Session, col, func, select

from core.text import UnsafeText, check_text, clean_prompt
from db.models import LOCAL_USER_ID, LOCAL_USER_NAME, USER_ROLES, AuditEntry, History, User, UserSession
from db.types import utcnow
from jobs.services import Services
from jobs.services.permissions import Actor, UnknownUser, require

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+")
MAX_EMAIL = 254
MAX_DISPLAY_NAME = 128
#: Long enough to resist guessing; the upper bound keeps one Argon2 check from being a denial of service.
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
#: Failed password checks for one name that cost nothing; each one after doubles the wait, up to the cap.
FREE_FAILURES = 3
MAX_SIGN_IN_DELAY_S = 30
#: last_seen_at is written at most this often: a page reruns on every click, and each would be a write.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class ArgonCosts:
    """Argon2id work factors: pwdlib's recommended values by default; tests make them small."""

    time_cost: int = 3
    memory_cost: int = 65536  # KiB
    parallelism: int = 4


#: The costs new hashes are made with. A hash made with other costs still verifies and is remade at the next sign-in.
PASSWORD_COSTS = ArgonCosts()


def make_password_hasher(costs: ArgonCosts | None = None) -> PasswordHash:
    """An Argon2id hasher with ``costs`` (:data:`PASSWORD_COSTS` when None)."""
    c = PASSWORD_COSTS if costs is None else costs
    return PasswordHash((Argon2Hasher(time_cost=c.time_cost, memory_cost=c.memory_cost, parallelism=c.parallelism),))


def sign_in_delay(failures: int) -> int:
    """Seconds a name must wait after ``failures`` failed password checks in a row."""
    if failures < FREE_FAILURES:
        return 0
    return min(MAX_SIGN_IN_DELAY_S, 2 ** (failures - FREE_FAILURES))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccountError(ValueError):
    """A change to an account that is refused; the message is a sentence, the data is in ``data``."""

    def __init__(self, message: str, **data: object) -> None:
        super().__init__(message)
        self.data = data


class SignInRefused(Exception):
    """A password check that failed; the message does not say whether the name exists."""

    def __init__(self, name: str, message: str = "The name or the password is wrong.") -> None:
        super().__init__(message)
        self.name = name


class SignInThrottled(SignInRefused):
    """Too many failed checks for ``name`` lately: no check is made until ``retry_after_s`` have passed."""

    def __init__(self, name: str, retry_after_s: int) -> None:
        super().__init__(name, f"Too many failed sign-ins as {name}; try again in {retry_after_s} s.")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Account:
    """A person as the accounts list shows them (never the password hash)."""

    id: int
    name: str
    display_name: str
    email: str | None
    role: str
    active: bool
    has_password: bool
    created_at: datetime
    last_sign_in_at: datetime | None

    @classmethod
    def of(cls, user: User) -> Account:
        assert user.id is not None
        return cls(id=user.id, name=user.name, display_name=user.display_name, email=user.email, role=user.role,
                   active=user.active, has_password=user.password_hash is not None, created_at=user.created_at,
                   last_sign_in_at=user.last_sign_in_at)


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor_id: int | None
    action: str
    object_type: str
    object_id: str | None
    detail: dict[str, Any]


class Accounts:
    """The accounts service on one database. ``clock`` and ``passwords`` are for tests (time, cheap hashes)."""

    def __init__(self, services: Services, *, clock: Callable[[], datetime] = utcnow,
                 passwords: PasswordHash | None = None) -> None:
        self.services = services
        self.clock = clock
        self.passwords = passwords or make_password_hasher()
        self._dummy_hash: str | None = None

    # ------------------------------------------------------------------ accounts

    def create_user(self, actor: Actor, name: str, *, role: str = "editor", email: str | None = None,
                    display_name: str = "", password: str | None = None, first: bool = False) -> Account:
        """A new account; ``password`` None: one without a password (it signs in another way, or not yet).

        ``first``: only while no one can sign in (the first-run page, open to whoever comes first):
        decided under a lock in the same transaction, so two people racing cannot both become admin.
        """
        require(actor, "users.manage")
        name = _check_name(name)
        role = _check_role(role)
        email = _check_email(email)
        display_name = _check_display_name(display_name)
        password_hash = None if password is None else self.passwords.hash(_check_password(password))
        with self.services.database.write_session() as session:
            if first:
                # The local user's row is the lock (SQLite's writer holds the whole database already).
                session.exec(select(User).where(User.id == LOCAL_USER_ID).with_for_update()).first()
                if _anyone_can_sign_in(session):
                    raise AccountError("An account that can sign in exists already; sign in, and ask an admin "
                                       "for an account.", name=name)
            taken = session.exec(select(User).where(func.lower(User.name) == name.lower())).first()
            if taken is not None:
                raise AccountError(f"The name {name} is taken (by {taken.name}); choose another.", name=name)
            if email is not None and session.exec(select(User).where(User.email == email)).first() is not None:
                raise AccountError(f"The e-mail address {email} belongs to another account.", email=email)
            user = User(name=name, display_name=display_name, email=email, role=role, password_hash=password_hash,
                        created_at=self.clock())
            session.add(user)
            session.flush()
            self._audit(session, actor, "user.created", user,
                        {"name": name, "role": role, "email": email, "has_password": password_hash is not None})
            if role == "admin":
                self._adopt_local_histories(session, actor, user)
            return Account.of(user)

    def _adopt_local_histories(self, session: Session, actor: Actor, user: User) -> None:
        """The first named admin takes over what the local user made while sign-in was off.

        A single-person install that turns sign-in on keeps its histories: they belong to the
        person who now runs it, not to an account no one can sign in as.
        """
        others = session.exec(select(func.count()).select_from(User).where(
            User.role == "admin", col(User.id) != LOCAL_USER_ID, col(User.id) != user.id)).one()
        if others:
            return
        moved = session.execute(sa.update(History).where(col(History.owner_id) == LOCAL_USER_ID)
                                .values(owner_id=user.id)).rowcount  # type: ignore[attr-defined]
        if moved:
            self._audit(session, actor, "histories.adopted", user, {"from": LOCAL_USER_NAME, "histories": moved})

    def list_users(self, actor: Actor) -> list[Account]:
        require(actor, "users.manage")
        with self.services.database.session() as session:
            return [Account.of(u) for u in session.exec(select(User).order_by(User.id))]

    def get_user(self, actor: Actor, name: str) -> Account:
        require(actor, "users.manage")
        with self.services.database.session() as session:
            return Account.of(_user_named(session, name))

    def set_role(self, actor: Actor, name: str, role: str) -> Account:
        require(actor, "users.manage")
        role = _check_role(role)
        with self.services.database.write_session() as session:
            user = _user_named(session, name)
            if user.role == role:
                return Account.of(user)
            if role != "admin":
                _keep_an_admin(session, user, f"make {user.name} {_article(role)} {role}")
            before, user.role = user.role, role
            session.add(user)
            self._audit(session, actor, "user.role_set", user, {"from": before, "to": role})
            return Account.of(user)

    def disable(self, actor: Actor, name: str) -> Account:
        """Disable an account: it may do nothing, and its sessions end now."""
        return self._set_active(actor, name, False)

    def enable(self, actor: Actor, name: str) -> Account:
        return self._set_active(actor, name, True)

    def _set_active(self, actor: Actor, name: str, active: bool) -> Account:
        require(actor, "users.manage")
        with self.services.database.write_session() as session:
            user = _user_named(session, name)
            if user.active == active:
                return Account.of(user)
            if not active:
                _keep_an_admin(session, user, f"disable {user.name}")
                self._revoke_sessions(session, user)
            user.active = active
            session.add(user)
            self._audit(session, actor, "user.enabled" if active else "user.disabled", user, {})
            return Account.of(user)

    def set_password(self, actor: Actor, name: str, password: str | None) -> None:
        """Set (None: remove) the password of ``name``; a person may change their own, an admin anyone's.

        The account's sessions end: whoever knew the old password is signed out.
        """
        with self.services.database.write_session() as session:
            user = _user_named(session, name)
            if not (actor.active and actor.id == user.id):
                require(actor, "users.manage")
            user.password_hash = None if password is None else self.passwords.hash(_check_password(password))
            session.add(user)
            self._revoke_sessions(session, user)
            self._audit(session, actor, "user.password_set" if password is not None else "user.password_removed",
                        user, {})

    # ------------------------------------------------------------------ passwords

    def verify_password(self, name: str, password: str) -> Actor:
        """The person ``name`` if ``password`` is theirs; :class:`SignInRefused` (or ``SignInThrottled``) if not.

        A name that does not exist fails exactly like a wrong password, after the same
        Argon2 work, and counts towards the same delay.
        """
        key = name.strip().lower()[:128]
        now = self.clock()
        wait = self._sign_in_wait(key, now)
        if wait > 0:
            raise SignInThrottled(name, wait)
        with self.services.database.session() as session:
            user = session.exec(select(User).where(func.lower(User.name) == key)).first()
        stored = user.password_hash if user is not None else None
        if stored is None or len(password) > MAX_PASSWORD:  # too long to be one: no Argon2 work on it either
            self.passwords.verify(password[:MAX_PASSWORD], self._dummy())
            ok, new_hash = False, None
        else:
            ok, new_hash = self.passwords.verify_and_update(password, stored)
        if not ok or user is None:
            with self.services.database.write_session() as session:
                record_audit(session, None, "sign_in.failed", "sign_in", key, {}, now)
            raise SignInRefused(name)
        actor = Actor.of(user)
        with self.services.database.write_session() as session:
            record_audit(session, actor.id, "sign_in.succeeded", "sign_in", key, {}, now)
            if new_hash is not None:  # made with other costs: remade with today's
                session.execute(sa.update(User).where(User.id == user.id).values(password_hash=new_hash))
        if not actor.active:
            raise SignInRefused(name, f"The account {user.name} is disabled; ask an admin to enable it.")
        return actor

    def failed_sign_ins(self, name: str) -> int:
        """Failed password checks for ``name`` since its last successful one."""
        with self.services.database.session() as session:
            return _failures(session, name.strip().lower()[:128])[0]

    def _sign_in_wait(self, key: str, now: datetime) -> int:
        with self.services.database.session() as session:
            failures, last = _failures(session, key)
        delay = sign_in_delay(failures)
        if delay == 0 or last is None:
            return 0
        remaining = (last + timedelta(seconds=delay) - now).total_seconds()
        return max(0, math.ceil(remaining))

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.passwords.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    # ------------------------------------------------------------------ sessions

    def start_session(self, user: Actor) -> str:
        """A new sign-in for ``user``: returns the token for the browser (shown once; only its hash is kept)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + timedelta(hours=self.services.settings.session_hours)
        with self.services.database.write_session() as session:
            row = session.get(User, user.id)
            if row is None:
                raise UnknownUser(user.id)
            if not row.active:
                raise SignInRefused(row.name, f"The account {row.name} is disabled; ask an admin to enable it.")
            record = UserSession(user_id=user.id, token_hash=token_hash(token), created_at=now, expires_at=expires,
                                 last_seen_at=now)
            session.add(record)
            row.last_sign_in_at = now
            session.add(row)
            session.flush()
            record_audit(session, user.id, "session.started", "session", str(record.id),
                         {"expires_at": expires.isoformat()}, now)
        return token

    def session_user(self, token: str) -> Actor | None:
        """The person signed in with ``token``; None when it is unknown, expired, revoked or their account disabled."""
        now = self.clock()
        with self.services.database.session() as session:
            found = session.exec(select(UserSession, User).join(User, User.id == UserSession.user_id)
                                 .where(UserSession.token_hash == token_hash(token))).first()
        if found is None:
            return None
        record, user = found
        if record.revoked_at is not None or record.expires_at <= now or not user.active:
            return None
        if now - record.last_seen_at >= LAST_SEEN_RESOLUTION:
            with self.services.database.write() as conn:
                conn.execute(sa.update(UserSession).where(UserSession.id == record.id).values(last_seen_at=now))
        return Actor.of(user)

    def end_session(self, token: str) -> bool:
        """Sign out: the session of ``token`` ends now. False when there was no live session to end."""
        now = self.clock()
        with self.services.database.write_session() as session:
            record = session.exec(select(UserSession).where(UserSession.token_hash == token_hash(token))).first()
            if record is None or record.revoked_at is not None:
                return False
            record.revoked_at = now
            session.add(record)
            record_audit(session, record.user_id, "session.ended", "session", str(record.id), {}, now)
            return True

    def _revoke_sessions(self, session: Session, user: User) -> None:
        session.execute(sa.update(UserSession)
                        .where(col(UserSession.user_id) == user.id, col(UserSession.revoked_at).is_(None))
                        .values(revoked_at=self.clock()))

    # ------------------------------------------------------------------ audit log

    def audit_entries(self, actor: Actor, *, limit: int = 100) -> list[AuditRecord]:
        """The newest entries of the audit log, newest first."""
        require(actor, "users.manage")
        with self.services.database.session() as session:
            rows = session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)).all()
        return [AuditRecord(id=r.id or 0, at=r.at, actor_id=r.actor_id, action=r.action, object_type=r.object_type,
                            object_id=r.object_id, detail=dict(r.detail)) for r in rows]

    def _audit(self, session: Session, actor: Actor, action: str, user: User, detail: dict[str, Any]) -> None:
        record_audit(session, actor.id, action, "user", str(user.id), detail, self.clock())

    # ------------------------------------------------------------------ doors' look-ups

    def actor_named(self, name: str) -> Actor:
        """The person named ``name`` as the permission check sees them (``UnknownUser`` when there is none).

        What a door that is told whom it acts for (``chatedit --as NAME``) asks: it needs no
        permission, since naming someone grants nothing; every action is still checked for them.
        """
        with self.services.database.session() as session:
            return Actor.of(_user_named(session, name))

    def sign_in_counts(self, actor: Actor, days: int = 14) -> list[tuple[date, int, int]]:
        """(day, successful, failed) password sign-ins of each of the last ``days`` UTC days, oldest first."""
        require(actor, "users.manage")
        today = self.clock().astimezone(timezone.utc).date()
        first = today - timedelta(days=max(1, days) - 1)
        since = datetime.combine(first, datetime.min.time(), tzinfo=timezone.utc)
        with self.services.database.session() as session:
            rows = session.exec(select(AuditEntry.action, AuditEntry.at).where(
                col(AuditEntry.action).in_(("sign_in.succeeded", "sign_in.failed")), AuditEntry.at >= since)).all()
        counts = {first + timedelta(days=n): [0, 0] for n in range((today - first).days + 1)}
        for action, at in rows:
            day = counts.get(at.astimezone(timezone.utc).date())
            if day is not None:
                day[0 if action == "sign_in.succeeded" else 1] += 1
        return [(day, ok, failed) for day, (ok, failed) in counts.items()]



def display_names(session: Session) -> dict[int, str]:
    """Every user's id → how pages name them (display name, else the user name)."""
    return {int(i): (d or n) for i, n, d in session.exec(select(User.id, User.name, User.display_name)).all()}


def record_audit(session: Session, actor_id: int | None, action: str, object_type: str, object_id: str | None,
                 detail: dict[str, Any], at: datetime | None = None) -> None:
    """Append one row to the audit log, in the caller's transaction (so it holds exactly when the change does)."""
    session.add(AuditEntry(at=at or utcnow(), actor_id=actor_id, action=action, object_type=object_type,
                           object_id=object_id, detail=detail))


def _anyone_can_sign_in(session: Session) -> bool:
    """Whether an active account other than the local user has a password or an OpenID identity."""
    count = session.exec(select(func.count()).select_from(User).where(
        col(User.id) != LOCAL_USER_ID, User.active == sa.true(),
        sa.or_(col(User.password_hash).is_not(None), col(User.oidc_subject).is_not(None)))).one()
    return bool(count)


def anyone_can_sign_in(services: Services) -> bool:
    """False on a fresh install with sign-in on: the first-run page makes the first admin."""
    with services.database.session() as session:
        return _anyone_can_sign_in(session)


def _failures(session: Session, key: str) -> tuple[int, datetime | None]:
    """Failed checks for ``key`` since its last success (as many as the longest delay needs) and the last one's time."""
    horizon = FREE_FAILURES + math.ceil(math.log2(MAX_SIGN_IN_DELAY_S)) + 1
    rows = session.exec(select(AuditEntry.action, AuditEntry.at)
                        .where(AuditEntry.object_type == "sign_in", AuditEntry.object_id == key)
                        .order_by(col(AuditEntry.id).desc()).limit(horizon)).all()
    failures = 0
    for action, _ in rows:
        if action != "sign_in.failed":
            break
        failures += 1
    return failures, (rows[0][1] if failures else None)


def _user_named(session: Session, name: str) -> User:
    user = session.exec(select(User).where(func.lower(User.name) == name.strip().lower())).first()
    if user is None:
        raise UnknownUser(name)
    return user


def _keep_an_admin(session: Session, user: User, change: str) -> None:
    """Refuse a change that would leave no active admin, or take the local user's admin role while sign-in is off."""
    if user.id == LOCAL_USER_ID:
        raise AccountError(f"Cannot {change}: the app and the command line act as the local user while sign-in is "
                           "off, so it stays an active admin.", name=user.name)
    if user.role != "admin" or not user.active:
        return
    # FOR UPDATE (PostgreSQL): two admins demoting each other at once cannot both pass.
    admins = session.exec(select(User.id).where(User.role == "admin", User.active == sa.true())
                          .with_for_update()).all()
    if len([a for a in admins if a != user.id]) == 0:
        raise AccountError(f"Cannot {change}: {user.name} is the last active admin; make another person admin first.",
                           name=user.name)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(f"A user name is 1 to 64 letters, digits, '.', '_' or '-', not {name[:80]!r}.", name=name)
    return name


def _check_role(role: str) -> str:
    if role not in USER_ROLES:
        raise AccountError(f"There is no role {role[:40]!r}; the roles are {', '.join(USER_ROLES)}.", role=role)
    return role


def _check_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    email = email.strip().lower()
    if len(email) > MAX_EMAIL or not EMAIL_PATTERN.fullmatch(email):
        raise AccountError(f"{email[:80]!r} is not an e-mail address.", email=email)
    return email


def _check_display_name(display_name: str) -> str:
    display_name = clean_prompt(display_name).strip()
    if len(display_name) > MAX_DISPLAY_NAME:
        raise AccountError(f"A display name is at most {MAX_DISPLAY_NAME} characters, not {len(display_name)}.",
                           display_name=display_name)
    return display_name


def _check_password(password: str) -> str:
    try:
        check_text(password, "the password")
    except UnsafeText as exc:
        raise AccountError(str(exc)) from None
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"A password is {MIN_PASSWORD} to {MAX_PASSWORD} characters long, not {len(password)}.",
                           length=len(password))
    return password
