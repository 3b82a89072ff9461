"""The chat of an edit history: every request and reply, kept with the history so a reload shows it again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from db.models import CHAT_ROLES, LOCAL_USER_ID, ChatMessage, History
from jobs.histories import HistoryNotFound
from jobs.services import Services


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
    if role not in CHAT_ROLES:
        raise ValueError(f"A chat message's role is one of {', '.join(CHAT_ROLES)}, not {role!r}.")
    with services.database.write_session() as session:
        if session.get(History, history_id) is None:
            raise HistoryNotFound(history_id)
        row = ChatMessage(history_id=history_id, role=role, content=content, commands=commands, author_id=author_id)
        session.add(row)
        session.flush()
        return _record(row)


def messages(services: Services, history_id: int) -> list[MessageRecord]:
    """The conversation of a history, oldest first."""
    with services.database.session() as session:
        rows = session.exec(select(ChatMessage).where(ChatMessage.history_id == history_id)
                            .order_by(col(ChatMessage.id))).all()
        return [_record(r) for r in rows]


def _record(row: ChatMessage) -> MessageRecord:
    assert row.id is not None
    return MessageRecord(id=row.id, history_id=row.history_id, role=row.role, content=row.content,
                         commands=None if row.commands is None else list(row.commands), author_id=row.author_id,
                         created_at=row.created_at)
