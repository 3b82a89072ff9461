"""An error as one line a person reads; the full message and the traceback belong in the log.

Taking ``str(exc).splitlines()[0]`` inside an ``except`` raises ``IndexError`` when the
message is empty, and that hides the error being reported: these helpers never raise.
"""

from __future__ import annotations


def first_text_line(text: str | None) -> str:
    """The first line of ``text`` that is not blank, stripped; ``""`` when there is none."""
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def first_line(exc: BaseException) -> str:
    """The first non-blank line of the exception's message, else its class name (an empty message says nothing)."""
    return first_text_line(str(exc)) or type(exc).__name__


def error_line(exc: BaseException) -> str:
    """``Type: first line`` of the exception, or its type alone when the message is empty."""
    line = first_text_line(str(exc))
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
