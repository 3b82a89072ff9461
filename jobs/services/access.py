"""Who may read or change a history, and who may submit work: every door asks here before it acts.

Reading follows ownership and visibility (``history.read`` in ``permissions``); changing needs
``history.write``. The queue calls :func:`admit_jobs` before it queues anything, so a person
without ``jobs.submit`` cannot queue a job by any route, however it was reached.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import col, select

from db.models import History, User
from jobs import gallery
from jobs.histories import HistoryRecord, StepRecord, get_history, get_step
from jobs.services import Services
from jobs.services.permissions import Actor, PermissionDenied, UnknownUser, allowed, require

#: Job kinds that need more than ``jobs.submit``: the permission their owner must also have.
KIND_PERMISSIONS: dict[str, str] = {
    "dataset_import": "datasets.manage",
    "dataset_generate": "datasets.manage",
    "dataset_harvest": "datasets.manage",
    "eval_planner": "datasets.manage",
    "eval_run": "datasets.manage",
    "finetune": "training.run",
}


def admit_jobs(services: Services, jobs: Iterable[tuple[int, str]]) -> None:
    """Refuse (:class:`PermissionDenied`) a batch of jobs if any owner may not submit jobs, or not that kind."""
    wanted = set(jobs)
    owners = {owner for owner, _ in wanted}
    with services.database.session() as session:
        users = {u.id: u for u in session.exec(select(User).where(col(User.id).in_(owners))).all()}
    for owner, kind in sorted(wanted):
        user = users.get(owner)
        if user is None:
            raise UnknownUser(owner)
        actor = Actor.of(user)
        require(actor, "jobs.submit")
        if kind in KIND_PERMISSIONS:
            require(actor, KIND_PERMISSIONS[kind])


def admit_owners(services: Services, owners: Iterable[int]) -> None:
    """Refuse (:class:`PermissionDenied`) unless every owner may submit jobs (pages check before they store input)."""
    admit_jobs(services, {(owner, "") for owner in owners})


def readable_history(services: Services, actor: Actor, history_id: int) -> HistoryRecord:
    """The history, if ``actor`` may read it (``PermissionDenied`` otherwise, ``HistoryNotFound`` when none)."""
    history = get_history(services, history_id)
    require(actor, "history.read", history)
    return history


def writable_history(services: Services, actor: Actor, history_id: int) -> HistoryRecord:
    """The history, if ``actor`` may change it (edit it, set its base, rename, share or delete it)."""
    history = get_history(services, history_id)
    require(actor, "history.write", history)
    return history


def readable_step(services: Services, actor: Actor, step_id: int) -> tuple[StepRecord, HistoryRecord]:
    """A step and its history, if ``actor`` may read the history."""
    step = get_step(services, step_id)
    return step, readable_history(services, actor, step.history_id)


def may_read(actor: Actor, history: HistoryRecord) -> bool:
    return allowed(actor, "history.read", history)


def may_write(actor: Actor, history: HistoryRecord) -> bool:
    return allowed(actor, "history.write", history)


def require_history_write(services: Services, user_id: int, history_id: int | None) -> None:
    """For submissions that name a history: its owner (or an admin) only. Nothing to check without one."""
    if history_id is None:
        return
    with services.database.session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise UnknownUser(user_id)
        actor = Actor.of(user)
    writable_history(services, actor, history_id)


def change_base(services: Services, actor: Actor, history_id: int, step_id: int, *, seen_version: int | None) -> None:
    """Set the step the next edit starts from, as ``actor``, refused when the history moved since ``seen_version``."""
    writable_history(services, actor, history_id)
    gallery.set_base_step(services, history_id, step_id, by=actor.id, seen_version=seen_version)


def share(services: Services, actor: Actor, history_id: int, visibility: str) -> None:
    """Make a history ``team`` (everyone who may read the team's) or ``private`` (its owner and admins)."""
    writable_history(services, actor, history_id)
    gallery.set_visibility(services, history_id, visibility, by=actor.id)


def rename(services: Services, actor: Actor, history_id: int, title: str) -> None:
    writable_history(services, actor, history_id)
    gallery.rename_history(services, history_id, title, by=actor.id)


def delete(services: Services, actor: Actor, history_id: int) -> None:
    writable_history(services, actor, history_id)
    gallery.delete_history(services, history_id, by=actor.id)


def restore(services: Services, actor: Actor, history_id: int) -> None:
    writable_history(services, actor, history_id)
    gallery.restore_history(services, history_id, by=actor.id)


def readable_filter(actor: Actor):  # type: ignore[no-untyped-def]
    """A SQL condition on ``histories`` selecting the ones ``actor`` may read (for listings)."""
    from sqlalchemy import false, or_, true

    if allowed(actor, "history.read_private"):
        return true()
    if not actor.active:
        return false()
    conditions = []
    if allowed(actor, "history.read_own"):
        conditions.append(col(History.owner_id) == actor.id)
    if allowed(actor, "history.read_team"):
        conditions.append(col(History.visibility) == "team")
    return or_(*conditions) if conditions else false()


__all__ = ["KIND_PERMISSIONS", "PermissionDenied", "admit_jobs", "admit_owners", "change_base", "delete", "may_read", "rename", "restore", "share", "may_write", "readable_filter", "readable_history",
           "readable_step",
           "require_history_write", "writable_history"]
