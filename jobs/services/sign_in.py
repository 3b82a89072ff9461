"""Signing people in: a password and a session token (local), or an OpenID provider's claims (OIDC).

The sign-in page calls only these functions: it never reads the users table itself. A person who
comes through OIDC is matched by the provider's (issuer, subject), never by e-mail address: a
provider that lets people choose their address must not hand them someone else's account.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, func, select

from core.text import clean_prompt
from db.models import LOCAL_USER_ID, User
from db.types import utcnow
from jobs.services import Services
from jobs.services.accounts import (
    EMAIL_PATTERN,
    MAX_DISPLAY_NAME,
    MAX_EMAIL,
    AccountError,
    Accounts,
    SignInRefused,
    anyone_can_sign_in,
    record_audit,
)
from jobs.services.permissions import Actor, actor_for, local_actor

#: Longest issuer or subject the users table keeps.
MAX_OIDC_FIELD = 255
#: Characters a user name may not hold (accounts.NAME_PATTERN allows letters, digits, '.', '_' and '-').
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")
#: A derived name leaves room for a "-NN" suffix that makes it unique.
_NAME_STEM = 60


class OidcRefused(SignInRefused):
    """A person the OpenID provider vouched for, whom ChatEdit does not let in; the message says why."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(name, message)


@dataclass(frozen=True)
class SignedIn:
    """A person signed in, and the token of their new session (the browser keeps it; the database its hash)."""

    actor: Actor
    token: str


def accounts(services: Services) -> Accounts:
    """The accounts service with this installation's Argon2 costs."""
    return Accounts(services)


# ---------------------------------------------------------------------- local accounts


def password_sign_in(services: Services, name: str, password: str) -> SignedIn:
    """Check ``password`` for ``name`` and start a session; ``SignInRefused`` / ``SignInThrottled`` if not."""
    service = accounts(services)
    actor = service.verify_password(name, password)
    return SignedIn(actor, service.start_session(actor))


def session_actor(services: Services, token: str | None) -> Actor | None:
    """Who is signed in with ``token`` now (None: nobody; it is unknown, expired, revoked or the account disabled)."""
    if not token:
        return None
    return accounts(services).session_user(token)


def sign_out(services: Services, token: str | None) -> None:
    """End the session of ``token`` on the server: a copy of the token signs nobody in afterwards."""
    if token:
        accounts(services).end_session(token)


def has_password(services: Services, actor: Actor) -> bool:
    """Whether ``actor`` signs in with a password (only they can change one)."""
    with services.database.session() as session:
        user = session.get(User, actor.id)
    return user is not None and user.password_hash is not None


def change_own_password(services: Services, actor: Actor, current: str, new: str, repeated: str) -> str:
    """``actor`` changes their own password after proving they know the current one; returns a new session token.

    Changing a password ends every session of the account (whoever knew the old one is signed
    out), this browser's included, so the person gets a new session here.
    """
    if new != repeated:
        raise AccountError("The two new passwords differ; type the same one twice.")
    service = accounts(services)
    try:
        service.verify_password(actor.name, current)
    except SignInRefused as exc:
        if type(exc) is SignInRefused:
            raise SignInRefused(actor.name, "The current password is wrong; nothing was changed.") from None
        raise
    service.set_password(actor, actor.name, new)
    return service.start_session(actor_for(services, actor.id))


def nobody_can_sign_in(services: Services) -> bool:
    """True while no active account has a password or an OpenID identity: the first-run page makes an admin."""
    return not anyone_can_sign_in(services)


def create_first_admin(services: Services, name: str, display_name: str, password: str, repeated: str) -> SignedIn:
    """The first-run page: the first admin (who adopts the local user's histories), signed in.

    Refused once anyone can sign in: the page is open to whoever reaches the app first, so it
    must not make a second admin for someone else.
    """
    if password != repeated:
        raise AccountError("The two passwords differ; type the same one twice.")
    service = accounts(services)
    account = service.create_user(local_actor(services), name, role="admin", display_name=display_name,
                                  password=password, first=True)
    actor = actor_for(services, account.id)
    return SignedIn(actor, service.start_session(actor))


# ---------------------------------------------------------------------- OIDC


def oidc_sign_in(services: Services, claims: Mapping[str, Any]) -> Actor:
    """The person an OpenID provider signed in (``claims`` of the ID token, as ``st.user`` holds them).

    Matched by (``iss``, ``sub``); someone new gets an account with the role mapped from
    ``settings.oidc_role_claim`` through ``settings.oidc_role_map`` (the map's first entry the
    claim holds), else ``settings.oidc_default_role``. Refused with :class:`OidcRefused` when the
    e-mail domain is not allowed or the account is disabled.
    """
    settings = services.settings
    issuer, subject = str(claims.get("iss") or ""), str(claims.get("sub") or "")
    shown = str(claims.get("email") or claims.get("preferred_username") or subject)[:80]
    if not issuer or not subject:
        raise OidcRefused(shown, "The sign-in provider did not say who you are (no issuer or subject); "
                                 "ask an admin to check its configuration.")
    if len(issuer) > MAX_OIDC_FIELD or len(subject) > MAX_OIDC_FIELD:
        raise OidcRefused(shown, f"The sign-in provider's issuer or subject is longer than {MAX_OIDC_FIELD} "
                                 "characters; ChatEdit cannot keep it.")
    email = _email_of(claims)
    _check_domain(settings.oidc_allowed_domains, email, claims, shown)
    for attempt in range(3):  # a concurrent first sign-in may take the name or the identity between check and write
        try:
            return _sign_in_identity(services, issuer, subject, email, claims)
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _sign_in_identity(services: Services, issuer: str, subject: str, email: str | None,
                      claims: Mapping[str, Any]) -> Actor:
    now = utcnow()
    with services.database.write_session() as session:
        user = session.exec(select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject)).first()
        if user is None:
            user = _new_person(session, services, issuer, subject, email, claims)
        elif not user.active:
            raise OidcRefused(user.name, f"The account {user.name} is disabled; ask an admin to enable it.")
        user.last_sign_in_at = now
        session.add(user)
        session.flush()
        # Logged against the user, not as a "sign_in" row: those count a name's failed passwords.
        record_audit(session, user.id, "sign_in.oidc", "user", str(user.id), {"issuer": issuer}, now)
        return Actor.of(user)


def _new_person(session: Session, services: Services, issuer: str, subject: str, email: str | None,
                claims: Mapping[str, Any]) -> User:
    settings = services.settings
    role = role_from_claims(claims, settings.oidc_role_claim, settings.oidc_role_map) or settings.oidc_default_role
    if email is not None and session.exec(select(User.id).where(User.email == email)).first() is not None:
        # Never joined to the account that has this address: the provider vouches for the subject, not for
        # who owns an address here. The new account goes without it; the audit row says why.
        email_note: dict[str, Any] = {"email_not_kept": email}
        email = None
    else:
        email_note = {}
    name = _unique_name(session, _name_stem(claims, subject))
    display_name = clean_prompt(str(claims.get("name") or "")).strip()[:MAX_DISPLAY_NAME]
    user = User(name=name, display_name=display_name, email=email, role=role, oidc_issuer=issuer,
                oidc_subject=subject)
    session.add(user)
    session.flush()
    record_audit(session, None, "user.created", "user", str(user.id),
                 {"name": name, "role": role, "email": email, "oidc_issuer": issuer, "via": "oidc", **email_note})
    if role == "admin":
        local = Actor(id=LOCAL_USER_ID, name="local", display_name="", role="admin")
        # The same rule as an admin made by hand: the first named admin takes over the local user's histories.
        Accounts(services)._adopt_local_histories(session, local, user)
    return user


def role_from_claims(claims: Mapping[str, Any], claim: str | None, role_map: Mapping[str, str]) -> str | None:
    """The role of the map's first entry whose value the claim holds (a string or a list); None: no match."""
    if not claim or not role_map:
        return None
    value = claims.get(claim)
    held = {value} if isinstance(value, str) else {str(v) for v in value} if isinstance(value, list | tuple) else set()
    for claim_value, role in role_map.items():
        if claim_value in held:
            return role
    return None


def _email_of(claims: Mapping[str, Any]) -> str | None:
    email = str(claims.get("email") or "").strip().lower()
    if not email or len(email) > MAX_EMAIL or not EMAIL_PATTERN.fullmatch(email):
        return None
    return email


def _check_domain(allowed: list[str], email: str | None, claims: Mapping[str, Any], shown: str) -> None:
    if not allowed:
        return
    if email is None:
        raise OidcRefused(shown, "Only people with an e-mail address at "
                                 f"{_listed(allowed)} may sign in, and the provider gave no address.")
    if claims.get("email_verified") is False:
        raise OidcRefused(shown, f"The provider has not verified the address {email}; only verified addresses at "
                                 f"{_listed(allowed)} may sign in.")
    domain = email.rsplit("@", 1)[1]
    if domain not in allowed:
        raise OidcRefused(shown, f"Only people with an e-mail address at {_listed(allowed)} may sign in, "
                                 f"not {email}.")


def _listed(domains: list[str]) -> str:
    return domains[0] if len(domains) == 1 else ", ".join(domains[:-1]) + " or " + domains[-1]


def _name_stem(claims: Mapping[str, Any], subject: str) -> str:
    email = str(claims.get("email") or "")
    for candidate in (str(claims.get("preferred_username") or ""), email.split("@", 1)[0], subject):
        stem = _NOT_IN_NAME.sub("-", candidate).strip("-.")[:_NAME_STEM]
        if stem:
            return stem
    return "user"


def _unique_name(session: Session, stem: str) -> str:
    taken = {n.lower() for n in session.exec(select(User.name).where(
        func.lower(User.name).like(f"{stem.lower()}%"))).all()}
    if stem.lower() not in taken:
        return stem
    number = 2
    while f"{stem}-{number}".lower() in taken:
        number += 1
    return f"{stem}-{number}"
