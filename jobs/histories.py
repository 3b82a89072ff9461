"""Edit histories: a tree of steps per history, each step an image and the commands that made it.

A history starts with a root step (the upload, no commands). Every edit job adds one
child step of the step it edited; a job that runs twice (at-least-once delivery) still
adds one step, because ``steps.job_id`` is unique.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.text import clean_prompt
from db.models import LOCAL_USER_ID, History, Step, User
from db.types import utcnow
from jobs.services import Services


class HistoryNotFound(LookupError):
    def __init__(self, history_id: int) -> None:
        super().__init__(f"There is no edit history {history_id}.")
        self.history_id = history_id


def history_row(session: Session, history_id: int) -> History:
    """The history's row, read in ``session``; :class:`HistoryNotFound` when there is none."""
    history = session.get(History, history_id)
    if history is None:
        raise HistoryNotFound(history_id)
    return history


#: What a change to a history was, in words for "Bea ... at 20:31": the ``histories.change`` codes.
CHANGES = {
    "created": "started it",
    "step": "added a step",
    "base": "chose another base step",
    "job": "started an edit",
    "message": "wrote in the chat",
    "review": "reviewed a step",
    "comment": "commented on a step",
    "title": "renamed it",
    "visibility": "changed who sees it",
    "deleted": "deleted it",
    "restored": "restored it",
}


@dataclass(frozen=True)
class HistoryVersion:
    """How far a history has come: pages remember it to refresh when it moves and to refuse stale changes."""

    version: int
    changed_by: int | None
    changed_by_name: str | None
    changed_at: datetime | None
    change: str | None

    def sentence(self) -> str:
        """ "Bea chose another base step at 2026-12-07 20:31." """
        who = self.changed_by_name or "someone"
        what = CHANGES.get(self.change or "", "changed it")
        at = "" if self.changed_at is None else f" at {self.changed_at.astimezone().strftime('%Y-%m-%d %H:%M:%S')}"
        return f"{who} {what}{at}."


class StaleHistory(Exception):
    """A change was asked on a view of the history older than the history: refused, never overwritten."""

    def __init__(self, history_id: int, seen: int, now: HistoryVersion) -> None:
        super().__init__(f"This history changed after you looked at it: {now.sentence()} "
                         "Nothing was changed; look at it again and choose again.")
        self.history_id = history_id
        self.seen = seen
        self.now = now


def touch(history: History, *, by: int | None, change: str) -> None:
    """Record a change to ``history`` (in the caller's session): one version more, who, when, what."""
    assert change in CHANGES, change
    now = utcnow()
    history.version = (history.version or 0) + 1
    history.changed_by, history.changed_at, history.change = by, now, change
    history.updated_at = now


def history_version(services: Services, history_id: int) -> HistoryVersion:
    """The history's version now, with who made the newest change (for polling and for refusals)."""
    with services.database.session() as session:
        row = session.exec(select(History.version, History.changed_by, User.name, User.display_name,
                                  History.changed_at, History.change)
                           .outerjoin(User, col(User.id) == col(History.changed_by))
                           .where(History.id == history_id)).first()
    if row is None:
        raise HistoryNotFound(history_id)
    version, by, name, display, at, change = row
    return HistoryVersion(version=int(version or 0), changed_by=by, changed_by_name=display or name,
                          changed_at=at, change=change)


def update_if_current(session: Session, history_id: int, seen_version: int | None, *, by: int | None, change: str,
                      **values: object) -> None:
    """Set ``values`` on the history and record the change, only if it is still at ``seen_version``.

    One ``UPDATE ... WHERE version = seen`` decides, so two people acting at once cannot both
    win; the loser gets :class:`StaleHistory`. ``seen_version`` None: no check (a job, the CLI).
    """
    assert change in CHANGES, change
    table = History.__table__  # type: ignore[attr-defined]
    where = table.c.id == history_id
    if seen_version is not None:
        where = sa.and_(where, table.c.version == seen_version)
    now = utcnow()
    result = session.execute(sa.update(table).where(where).values(
        version=table.c.version + 1, changed_by=by, changed_at=now, change=change, updated_at=now, **values))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        history_row(session, history_id)  # HistoryNotFound when it is gone
        assert seen_version is not None
        session.rollback()
        raise StaleHistory(history_id, seen_version, _version_in(session, history_id))


def _version_in(session: Session, history_id: int) -> HistoryVersion:
    history = history_row(session, history_id)
    session.refresh(history)
    user = session.get(User, history.changed_by) if history.changed_by is not None else None
    return HistoryVersion(version=history.version, changed_by=history.changed_by,
                          changed_by_name=None if user is None else (user.display_name or user.name),
                          changed_at=history.changed_at, change=history.change)


class StepNotFound(LookupError):
    def __init__(self, step_id: int) -> None:
        super().__init__(f"There is no step {step_id}.")
        self.step_id = step_id


@dataclass(frozen=True)
class StepRecord:
    id: int
    history_id: int
    parent_id: int | None
    image_id: int | None
    commands: list[dict[str, Any]]
    params: dict[str, Any]
    job_id: int | None
    created_by: int
    created_at: datetime


@dataclass(frozen=True)
class HistoryRecord:
    id: int
    title: str
    owner_id: int
    created_at: datetime
    updated_at: datetime
    #: When it was deleted (the gallery hides it and offers Undo); None while it is not.
    deleted_at: datetime | None = None
    #: "private" (its owner and admins) or "team" (everyone who may read the team's histories).
    visibility: str = "private"
    #: See :class:`HistoryVersion`: a change made on an older version is refused.
    version: int = 0

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class StartedHistory:
    history_id: int
    root_step_id: int


def start_history(services: Services, image_id: int, *, owner_id: int = LOCAL_USER_ID, title: str = "",
                  root_params: dict[str, Any] | None = None, job_id: int | None = None,
                  visibility: str | None = None) -> StartedHistory:
    """A new history whose root step is the uploaded image; ``root_params``: what the upload's cleaning did to it.

    ``visibility`` None: the installation's default (``CHATEDIT_DEFAULT_VISIBILITY``).

    A job that starts a history passes its ``job_id``: the root step records it (unique), so the
    job running again finds the history it started instead of starting a second one.
    """
    if job_id is not None:
        started = _history_of_job(services, job_id)
        if started is not None:
            return started
    try:
        with services.database.write_session() as session:
            history = History(title=clean_prompt(title)[:200], owner_id=owner_id,
                              visibility=visibility or services.settings.default_visibility,
                              changed_by=owner_id, changed_at=utcnow(), change="created")
            session.add(history)
            session.flush()
            assert history.id is not None
            root = Step(history_id=history.id, parent_id=None, image_id=image_id, created_by=owner_id,
                        params=dict(root_params or {}), job_id=job_id)
            session.add(root)
            session.flush()
            assert root.id is not None
            return StartedHistory(history_id=history.id, root_step_id=root.id)
    except IntegrityError:  # the same job's other run started it a moment ago
        started = _history_of_job(services, job_id) if job_id is not None else None
        if started is None:
            raise
        return started


def _history_of_job(services: Services, job_id: int) -> StartedHistory | None:
    step = _step_of_job(services, job_id)
    return None if step is None else StartedHistory(history_id=step.history_id, root_step_id=step.step_id)


def record_step(
    services: Services,
    *,
    history_id: int,
    parent_id: int | None,
    image_id: int,
    commands: list[dict[str, Any]],
    params: dict[str, Any],
    job_id: int | None,
    user_id: int = LOCAL_USER_ID,
) -> int:
    """Add a step (idempotent per job) and touch the history's ``updated_at``; returns the step id."""
    if job_id is not None:
        existing = _step_of_job(services, job_id)
        if existing is not None:
            return existing.step_id
    try:
        with services.database.write_session() as session:
            history = history_row(session, history_id)
            step = Step(history_id=history_id, parent_id=parent_id, image_id=image_id, commands=commands,
                        params=params, job_id=job_id, created_by=user_id)
            session.add(step)
            touch(history, by=user_id, change="step")
            session.add(history)
            session.flush()
            assert step.id is not None
            return step.id
    except IntegrityError:
        existing = _step_of_job(services, job_id) if job_id is not None else None
        if existing is None:
            raise
        return existing.step_id


def get_step(services: Services, step_id: int) -> StepRecord:
    with services.database.session() as session:
        row = session.get(Step, step_id)
        if row is None:
            raise StepNotFound(step_id)
        return step_record(row)


def get_history(services: Services, history_id: int) -> HistoryRecord:
    with services.database.session() as session:
        row = history_row(session, history_id)
        return history_record(row)


def history_steps(services: Services, history_id: int) -> list[StepRecord]:
    """All steps of a history, oldest first (parents always before their children)."""
    with services.database.session() as session:
        rows = session.exec(select(Step).where(Step.history_id == history_id).order_by(col(Step.id))).all()
        return [step_record(r) for r in rows]


class _JobStep(NamedTuple):
    step_id: int
    history_id: int


def _step_of_job(services: Services, job_id: int) -> _JobStep | None:
    """The one step a job made (``steps.job_id`` is unique), or None."""
    with services.database.session() as session:
        row = session.exec(select(Step.id, Step.history_id).where(Step.job_id == job_id)).first()
    return None if row is None else _JobStep(int(row[0]), int(row[1]))


def step_record(row: Step) -> StepRecord:
    assert row.id is not None
    return StepRecord(id=row.id, history_id=row.history_id, parent_id=row.parent_id, image_id=row.image_id,
                      commands=list(row.commands or []), params=dict(row.params or {}), job_id=row.job_id,
                      created_by=row.created_by, created_at=row.created_at)


def history_record(row: History) -> HistoryRecord:
    assert row.id is not None
    return HistoryRecord(id=row.id, title=row.title, owner_id=row.owner_id, created_at=row.created_at,
                         updated_at=row.updated_at, deleted_at=row.deleted_at, visibility=row.visibility,
                         version=row.version)
