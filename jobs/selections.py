"""The person's selection, kept with the history: a mask PNG (white = selected) at the base image's size.

It lives in the database, not in a browser session, so a reload, another tab or a shared
link shows the same selection, and the edit job reads the very blob the person sees.
"""

from __future__ import annotations

from jobs.histories import history_row
from jobs.services import Services


def selection_key(services: Services, history_id: int) -> str | None:
    """The blob key of the history's selection mask; None when nothing is selected."""
    with services.database.session() as session:
        history = history_row(session, history_id)
        return history.selection_key


def selection_png(services: Services, history_id: int) -> bytes | None:
    """The history's selection mask as PNG bytes; None when nothing is selected."""
    key = selection_key(services, history_id)
    return None if key is None else services.blobs.get(key)


def store_selection(services: Services, history_id: int, png: bytes | None) -> str | None:
    """Keep ``png`` (a mask, white = selected) as the history's selection; None clears it. Returns its blob key."""
    key = None if png is None else services.blobs.put(png)
    with services.database.write_session() as session:
        history = history_row(session, history_id)
        history.selection_key = key
        session.add(history)
    return key


def clear_selection(services: Services, history_id: int) -> None:
    store_selection(services, history_id, None)
