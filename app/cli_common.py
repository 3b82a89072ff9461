"""What every ``chatedit`` command shares: logging set-up and Services with errors as sentences."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.exc import InterfaceError, OperationalError

from core.settings import Settings
from db.engine import DatabaseConfigError
from jobs.errors import InvalidJobRequest, JobNotFound
from jobs.services import Services


def configure_logging(settings: Settings) -> None:
    # The format names no file, line, thread or process, so don't collect them: a worker logs
    # one line per job, and at thousands of short jobs a second the caller lookup shows
    # (the knobs of the logging HOWTO's "Optimization" section).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def database_unreachable(settings: Settings, exc: OperationalError | InterfaceError) -> click.ClickException:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__
    return click.ClickException(
        f"Cannot use the database {settings.resolved_database_url.split('@')[-1]}: {reason}. "
        "Check CHATEDIT_DATABASE_URL and that the server is running."
    )


@contextmanager
def open_services(obj: dict[str, Any], *, need_schema: bool = True, pool_size: int = 5) -> Iterator[Services]:
    """Services from settings, with every failure a person can cause turned into one sentence."""
    settings: Settings = obj["settings"]
    try:
        services = Services.from_settings(settings, pool_size=pool_size)
    except DatabaseConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if need_schema:
            from db.migrate import current_revision, head_revision

            current = current_revision(services.database)
            if current != head_revision():
                what = "no ChatEdit tables yet" if current is None else f"schema {current}, older than this version"
                raise click.ClickException(f"The database has {what}; run `chatedit init` first.")
        yield services
    except (OperationalError, InterfaceError) as exc:
        raise database_unreachable(settings, exc) from None
    except (JobNotFound, InvalidJobRequest) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        services.close()
