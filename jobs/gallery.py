"""The team gallery: every edit history as a card, and what the editor keeps per history (base step, last job).

Job status comes from ``jobs.queue`` (the only module that speaks SQL about jobs);
this module reads histories, steps and users.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, func, select

from core.text import clean_prompt
from db.models import VISIBILITIES, History, Step, User
from db.types import utcnow
from jobs.errors import JobNotFound
from jobs.histories import HistoryNotFound, StepNotFound, history_row, update_if_current
from jobs.queue import JobStatus
from jobs.services import Services
from jobs.services.permissions import Actor


@dataclass(frozen=True)
class HistoryCard:
    id: int
    title: str
    owner_id: int
    #: How the owner is named (their display name, else their user name).
    owner_name: str
    created_at: datetime
    updated_at: datetime
    step_count: int
    #: The image of the newest step (the latest result), for the thumbnail.
    latest_image_id: int | None
    base_step_id: int | None
    last_job_id: int | None
    #: The newest edit job's status ("succeeded", "failed", ...); None when nothing was run.
    last_status: JobStatus | None
    last_error: str | None
    #: "private" (its owner and admins) or "team" (everyone who may read the team's histories).
    visibility: str = "private"


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    display_name: str


def list_users(services: Services) -> list[UserRecord]:
    with services.database.session() as session:
        rows = session.exec(select(User).order_by(col(User.name))).all()
        return [UserRecord(id=r.id or 0, name=r.name, display_name=r.display_name or r.name) for r in rows]


def list_histories(services: Services, *, viewer: Actor | None = None, visibility: str | None = None,
                   owner_id: int | None = None, since: datetime | None = None, until: datetime | None = None,
                   failures_only: bool = False, limit: int = 60) -> list[HistoryCard]:
    """Histories, most recently edited first; ``since``/``until`` bound ``updated_at`` (aware datetimes).

    ``viewer``: only the histories that person may read (None: all, for the door functions and the
    command line, which check for themselves). ``visibility``: only "private" or only "team" ones.
    """
    if visibility is not None and visibility not in VISIBILITIES:
        raise ValueError(f"A history is {' or '.join(VISIBILITIES)}, not {visibility!r}.")
    counts = (select(Step.history_id, func.count().label("n"), func.max(Step.id).label("newest"))
              .group_by(col(Step.history_id)).subquery())
    query = (select(History, func.coalesce(func.nullif(User.display_name, ""), User.name), counts.c.n, counts.c.newest)
             .join(User, col(User.id) == col(History.owner_id))
             .outerjoin(counts, counts.c.history_id == col(History.id))
             .where(col(History.deleted_at).is_(None)))
    if viewer is not None:
        from jobs.services.access import readable_filter  # access imports this module

        query = query.where(readable_filter(viewer))
    if visibility is not None:
        query = query.where(History.visibility == visibility)
    if owner_id is not None:
        query = query.where(History.owner_id == owner_id)
    if since is not None:
        query = query.where(col(History.updated_at) >= since)
    if until is not None:
        query = query.where(col(History.updated_at) < until)
    if failures_only:
        query = query.where(col(History.last_job_id).is_not(None))
    query = query.order_by(col(History.updated_at).desc(), col(History.id).desc())
    if not failures_only:
        query = query.limit(limit)
    with services.database.session() as session:
        rows = session.exec(query).all()
        newest_ids = [r[3] for r in rows if r[3] is not None]
        images = dict(session.exec(select(Step.id, Step.image_id).where(col(Step.id).in_(newest_ids))).all()) \
            if newest_ids else {}
    cards = []
    for history, owner_name, n, newest in rows:
        status, error = _job_status(services, history.last_job_id)
        if failures_only and status is not JobStatus.FAILED:
            continue
        cards.append(HistoryCard(
            id=history.id, title=history.title, owner_id=history.owner_id, owner_name=owner_name,
            created_at=history.created_at, updated_at=history.updated_at, step_count=int(n or 0),
            latest_image_id=images.get(newest), base_step_id=history.base_step_id, last_job_id=history.last_job_id,
            last_status=status, last_error=error, visibility=history.visibility,
        ))
        if len(cards) >= limit:
            break
    return cards


def _job_status(services: Services, job_id: int | None) -> tuple[JobStatus | None, str | None]:
    if job_id is None:
        return None, None
    try:
        job = services.queue.get(job_id)
    except JobNotFound:
        return None, None
    return job.status, job.error_message


def base_step_id(services: Services, history_id: int) -> int:
    """The step the editor continues from: the one set as base, else the root step."""
    with services.database.session() as session:
        history = history_row(session, history_id)
        if history.base_step_id is not None:
            return history.base_step_id
        root = session.exec(select(Step.id).where(Step.history_id == history_id, col(Step.parent_id).is_(None))
                            .order_by(col(Step.id))).first()
        if root is None:
            raise HistoryNotFound(history_id)
        return root


def set_base_step(services: Services, history_id: int, step_id: int, *, by: int | None = None,
                  seen_version: int | None = None) -> None:
    """Make ``step_id`` (a step of this history) the base the next edit starts from.

    ``seen_version``: the history's version the person was looking at; if someone changed it
    since, :class:`jobs.histories.StaleHistory` says who and when, and nothing changes.
    """
    with services.database.write_session() as session:
        step = session.get(Step, step_id)
        if step is None or step.history_id != history_id:
            history_row(session, history_id)
            raise StepNotFound(step_id)
        update_if_current(session, history_id, seen_version, by=by, change="base", base_step_id=step_id)


def last_job_id(services: Services, history_id: int) -> int | None:
    """The newest edit job submitted for this history, if any."""
    with services.database.session() as session:
        history = history_row(session, history_id)
        return history.last_job_id


def set_last_job(services: Services, history_id: int, job_id: int, *, by: int | None = None) -> None:
    with services.database.write_session() as session:
        update_if_current(session, history_id, None, by=by, change="job", last_job_id=job_id)


def rename_history(services: Services, history_id: int, title: str, *, by: int | None = None) -> None:
    """Give a history a new title (trimmed to 200 characters; empty: the gallery calls it by its number)."""
    with services.database.write_session() as session:
        update_if_current(session, history_id, None, by=by, change="title", title=clean_prompt(title).strip()[:200])


def delete_history(services: Services, history_id: int, *, by: int | None = None) -> None:
    """Hide a history from the gallery and from links to it; nothing is erased, so it can be restored."""
    with services.database.write_session() as session:
        if history_row(session, history_id).deleted_at is None:
            update_if_current(session, history_id, None, by=by, change="deleted", deleted_at=utcnow())


def restore_history(services: Services, history_id: int, *, by: int | None = None) -> None:
    """Undo :func:`delete_history`: the history is back in the gallery, as it was."""
    with services.database.write_session() as session:
        update_if_current(session, history_id, None, by=by, change="restored", deleted_at=None)


def set_visibility(services: Services, history_id: int, visibility: str, *, by: int | None = None) -> None:
    """Share a history with the team or make it private again (``db.models.VISIBILITIES``)."""
    if visibility not in VISIBILITIES:
        raise ValueError(f"A history is {' or '.join(VISIBILITIES)}, not {visibility!r}.")
    with services.database.write_session() as session:
        if history_row(session, history_id).visibility != visibility:
            update_if_current(session, history_id, None, by=by, change="visibility", visibility=visibility)


def step_depths(parents: dict[int, int | None]) -> dict[int, int]:
    """Depth of every step in its tree (root 0), from step id → parent id."""
    depths: dict[int, int] = {}

    def depth(step: int) -> int:
        if step not in depths:
            parent = parents.get(step)
            depths[step] = 0 if parent is None or parent not in parents else depth(parent) + 1
        return depths[step]

    for step in parents:
        depth(step)
    return depths


def tree_order(parents: dict[int, int | None]) -> list[int]:
    """Steps in depth-first order (each child right after its parent's subtree starts), oldest child first."""
    children: dict[int | None, list[int]] = {}
    for step, parent in sorted(parents.items()):
        children.setdefault(parent if parent in parents else None, []).append(step)
    ordered: list[int] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        step = stack.pop()
        ordered.append(step)
        stack.extend(reversed(children.get(step, [])))
    return ordered


__all__: list[Any] = ["HistoryCard", "UserRecord", "base_step_id", "delete_history", "last_job_id", "list_histories",
                      "list_users", "rename_history", "restore_history", "set_base_step", "set_last_job", "set_visibility", "step_depths",
                      "tree_order"]
