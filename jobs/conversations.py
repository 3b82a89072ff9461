"""The chat of an edit history: every request and reply, kept with the history so a reload shows it again.

A request answered by a `plan` job on a worker leaves a pending marker (a ``system`` row
naming the job) where the reply will go; whoever sees the job end first turns the marker
into the reply, in one conditional UPDATE, so a reload or a second tab watches the same
job and the reply lands exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from core.text import clean_json, clean_text
from db.models import CHAT_ROLES, LOCAL_USER_ID, ChatMessage
from jobs.histories import history_row, touch
from jobs.services import Services

#: The key of a pending marker's only ``commands`` item: the `plan` job that will answer.
PENDING_PLAN = "pending_plan_job"


@dataclass(frozen=True)
class MessageRecord:
    id: int
    history_id: int
    role: str
    content: str
    #: For an assistant reply: the commands it proposed, each {"command", "paras", "valid", "reason"}.
    commands: list[dict[str, Any]] | None
    author_id: int | None
    created_at: datetime


def add_message(services: Services, history_id: int, role: str, content: str, *,
                commands: list[dict[str, Any]] | None = None, author_id: int | None = LOCAL_USER_ID) -> MessageRecord:
    """Keep one chat message; its text is cleaned first (a NUL or a lone surrogate cannot be stored, so it goes)."""
    if role not in CHAT_ROLES:
        raise ValueError(f"A chat message's role is one of {', '.join(CHAT_ROLES)}, not {role!r}.")
    content = clean_text(content)
    commands = None if commands is None else clean_json(commands)
    with services.database.write_session() as session:
        history = history_row(session, history_id)
        row = ChatMessage(history_id=history_id, role=role, content=content, commands=commands, author_id=author_id)
        session.add(row)
        # A message is a change others watching the history should see (their page refreshes on a new version).
        touch(history, by=author_id, change="message")
        session.add(history)
        session.flush()
        return _record(row)


def messages(services: Services, history_id: int) -> list[MessageRecord]:
    """The conversation of a history, oldest first (without pending markers)."""
    with services.database.session() as session:
        rows = session.exec(select(ChatMessage).where(ChatMessage.history_id == history_id)
                            .order_by(col(ChatMessage.id))).all()
        return [_record(r) for r in rows if _pending_job(r) is None]


def add_pending_plan(services: Services, history_id: int, job_id: int) -> MessageRecord:
    """Mark where the reply of `plan` job ``job_id`` goes, so a reload keeps watching it."""
    return add_message(services, history_id, "system", f"Waiting for plan job {job_id}.",
                       commands=[{PENDING_PLAN: int(job_id)}], author_id=None)


def pending_plan_job(services: Services, history_id: int) -> int | None:
    """The `plan` job this history's chat is waiting for (the newest one), or None."""
    with services.database.session() as session:
        rows = session.exec(select(ChatMessage).where(ChatMessage.history_id == history_id,
                                                      ChatMessage.role == "system")
                            .order_by(col(ChatMessage.id).desc())).all()
        return next((job for job in map(_pending_job, rows) if job is not None), None)


def resolve_pending_plan(services: Services, history_id: int, job_id: int, content: str,
                         commands: list[dict[str, Any]]) -> MessageRecord | None:
    """Turn the marker of ``job_id`` into the assistant's reply; None when it is already answered (or never was)."""
    with services.database.write_session() as session:
        rows = session.exec(select(ChatMessage).where(ChatMessage.history_id == history_id,
                                                      ChatMessage.role == "system")).all()
        marker = next((r for r in rows if _pending_job(r) == job_id), None)
        if marker is None:
            return None
        content, commands = clean_text(content), clean_json(commands)
        changed = session.execute(
            update(ChatMessage)
            .where(col(ChatMessage.id) == marker.id, col(ChatMessage.role) == "system")
            .values(role="assistant", content=content, commands=commands)
            .execution_options(synchronize_session=False))
        if changed.rowcount != 1:
            return None  # another tab answered it between the read and this update
        history = history_row(session, history_id)
        touch(history, by=None, change="message")
        session.add(history)
        session.expire(marker)
        session.refresh(marker)
        return _record(marker)


def _pending_job(row: ChatMessage) -> int | None:
    if row.role != "system" or not isinstance(row.commands, list) or len(row.commands) != 1:
        return None
    item = row.commands[0]
    job = item.get(PENDING_PLAN) if isinstance(item, dict) else None
    return job if isinstance(job, int) and not isinstance(job, bool) else None


def _record(row: ChatMessage) -> MessageRecord:
    assert row.id is not None
    return MessageRecord(id=row.id, history_id=row.history_id, role=row.role, content=row.content,
                         commands=None if row.commands is None else list(row.commands), author_id=row.author_id,
                         created_at=row.created_at)
