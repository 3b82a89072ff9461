"""Edit histories: a tree of steps per history, each step an image and the commands that made it.

A history starts with a root step (the upload, no commands). Every edit job adds one
child step of the step it edited; a job that runs twice (at-least-once delivery) still
adds one step, because ``steps.job_id`` is unique.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.text import clean_prompt
from db.models import LOCAL_USER_ID, History, Step
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

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class StartedHistory:
    history_id: int
    root_step_id: int


def start_history(services: Services, image_id: int, *, owner_id: int = LOCAL_USER_ID, title: str = "",
                  root_params: dict[str, Any] | None = None, job_id: int | None = None) -> StartedHistory:
    """A new history whose root step is the uploaded image; ``root_params``: what the upload's cleaning did to it.

    A job that starts a history passes its ``job_id``: the root step records it (unique), so the
    job running again finds the history it started instead of starting a second one.
    """
    if job_id is not None:
        started = _history_of_job(services, job_id)
        if started is not None:
            return started
    try:
        with services.database.write_session() as session:
            history = History(title=clean_prompt(title)[:200], owner_id=owner_id)
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
            history.updated_at = utcnow()
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
        return _step(row)


def get_history(services: Services, history_id: int) -> HistoryRecord:
    with services.database.session() as session:
        row = history_row(session, history_id)
        return _history(row)


def history_steps(services: Services, history_id: int) -> list[StepRecord]:
    """All steps of a history, oldest first (parents always before their children)."""
    with services.database.session() as session:
        rows = session.exec(select(Step).where(Step.history_id == history_id).order_by(col(Step.id))).all()
        return [_step(r) for r in rows]


class _JobStep(NamedTuple):
    step_id: int
    history_id: int


def _step_of_job(services: Services, job_id: int) -> _JobStep | None:
    """The one step a job made (``steps.job_id`` is unique), or None."""
    with services.database.session() as session:
        row = session.exec(select(Step.id, Step.history_id).where(Step.job_id == job_id)).first()
    return None if row is None else _JobStep(int(row[0]), int(row[1]))


def _step(row: Step) -> StepRecord:
    assert row.id is not None
    return StepRecord(id=row.id, history_id=row.history_id, parent_id=row.parent_id, image_id=row.image_id,
                      commands=list(row.commands or []), params=dict(row.params or {}), job_id=row.job_id,
                      created_by=row.created_by, created_at=row.created_at)


def _history(row: History) -> HistoryRecord:
    assert row.id is not None
    return HistoryRecord(id=row.id, title=row.title, owner_id=row.owner_id, created_at=row.created_at,
                         updated_at=row.updated_at, deleted_at=row.deleted_at)
