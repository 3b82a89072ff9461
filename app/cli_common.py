"""What every ``chatedit`` command shares: logging set-up, Services with errors as sentences, and the person
the command acts for (``chatedit --as NAME``, default the local admin), checked like any other door's.
"""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError

from core.errors import first_text_line
from core.settings import Settings
from core.text import UnsafeText
from db.blobs import StorageFull
from db.engine import DatabaseConfigError, safe_url
from jobs.errors import InvalidJobRequest, JobNotFound
from jobs.services import Services
from jobs.services.permissions import Actor, PermissionDenied, UnknownUser, local_actor

#: Key of ``ctx.obj`` holding the name given with ``--as`` (or CHATEDIT_CLI_USER); None: the local admin.
ACTING_AS = "acting_as"
#: Key of ``ctx.obj`` caching the Actor the command acts for, once looked up.
_ACTOR = "actor"


class Refused(click.ClickException):
    """The person the command acts for may not do this, or is unknown or disabled: one sentence, exit code 2."""

    exit_code = 2


def configure_logging(settings: Settings) -> None:
    # The format names no file, line, thread or process, so don't collect them: a worker logs
    # one line per job, and at thousands of short jobs a second the caller lookup shows
    # (the knobs of the logging HOWTO's "Optimization" section).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def database_where(settings: Settings) -> str:
    """The database as it may be shown: no user name, no password."""
    return safe_url(settings.resolved_database_url).rpartition("@")[2]


def is_disk_full(exc: BaseException) -> bool:
    """A write failed because a disk (ours or the database server's) is full."""
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, OSError) and orig.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return getattr(orig, "sqlstate", None) == "53100" or "database or disk is full" in str(orig)


def database_unreachable(settings: Settings, exc: DatabaseError) -> click.ClickException:
    """One sentence for a database error: disk full, not a database, or not reachable."""
    where = database_where(settings)
    if is_disk_full(exc):
        return click.ClickException(f"The disk of the database {where} is full; free some space and try again.")
    reason = first_text_line(str(exc.orig)).rstrip(".") if exc.orig else ""
    reason = reason or exc.__class__.__name__
    if settings.resolved_database_url.startswith("sqlite:") and "not a database" in reason:
        return click.ClickException(f"The file of the database {where} is not a SQLite database ({reason}); "
                                    "point CHATEDIT_DATABASE_URL at another file.")
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return click.ClickException(f"The database {where} refused the request: {reason}.")
    if "timeout" in reason:
        reason += f" after {settings.database_connect_timeout_seconds:g} s (CHATEDIT_DATABASE_CONNECT_TIMEOUT_SECONDS)"
    return click.ClickException(
        f"Cannot use the database {where}: {reason}. "
        "Check CHATEDIT_DATABASE_URL and that the server is running."
    )


def data_dir_unusable(settings: Settings, exc: OSError) -> click.ClickException:
    if is_disk_full(exc):
        return click.ClickException(f"The disk holding the data dir {settings.data_dir} is full; free some space "
                                    "(or point CHATEDIT_DATA_DIR elsewhere).")
    return click.ClickException(f"The data dir {settings.data_dir} (CHATEDIT_DATA_DIR) cannot be used: "
                                f"{exc.strerror or exc}.")


@contextmanager
def open_services(obj: dict[str, Any], *, need_schema: bool = True, pool_size: int = 5) -> Iterator[Services]:
    """Services from settings, with every failure a person can cause turned into one sentence."""
    settings: Settings = obj["settings"]
    try:
        services = Services.from_settings(settings, pool_size=pool_size)
    except DatabaseConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise data_dir_unusable(settings, exc) from None
    try:
        if need_schema:
            from db.migrate import current_revision, head_revision

            current = current_revision(services.database)
            if current != head_revision():
                what = "no ChatEdit tables yet" if current is None else f"schema {current}, older than this version"
                raise click.ClickException(f"The database has {what}; run `chatedit init` first.")
        yield services
    except DatabaseError as exc:
        raise database_unreachable(settings, exc) from None
    except DatabaseConfigError as exc:  # raised while connecting (e.g. SQLite refused WAL)
        raise click.ClickException(str(exc)) from None
    except (JobNotFound, InvalidJobRequest, UnsafeText, StorageFull) as exc:
        raise click.ClickException(str(exc)) from None
    except PermissionDenied as exc:
        raise Refused(str(exc)) from None
    finally:
        services.close()


def acting_actor(obj: dict[str, Any], services: Services) -> Actor:
    """The person this command acts for: the one named by ``--as`` (CHATEDIT_CLI_USER), else the local admin.

    An unknown name or a disabled account is refused here (``Refused``, exit code 2), before
    anything is done; what the person may do is then checked by each action (``require``).
    """
    cached = obj.get(_ACTOR)
    if isinstance(cached, Actor):
        return cached
    name = obj.get(ACTING_AS)
    if name is None:
        actor = local_actor(services)
    else:
        from jobs.services.accounts import Accounts

        try:
            actor = Accounts(services).actor_named(name)
        except UnknownUser:
            sentence = f"There is no user named {name!r} to act for; `chatedit users list` shows the accounts."
            raise Refused(sentence) from None
        if not actor.active:
            raise Refused(f"The account {actor.name} is disabled, so nothing can be done for it; "
                          "an admin can enable it with `chatedit users enable`.")
    obj[_ACTOR] = actor
    return actor


def acting_named(obj: dict[str, Any]) -> bool:
    """Whether ``--as`` (or CHATEDIT_CLI_USER) named someone, rather than leaving the local admin."""
    return obj.get(ACTING_AS) is not None
