"""Text at the boundary: what a person or a program hands us, made fit to store and to show a model.

PostgreSQL refuses a NUL character in any text and a lone surrogate anywhere (it stores
UTF-8, which cannot encode one), and it refuses them with a raw ``DataError`` halfway
through a transaction. So text is cleaned or refused where it enters, with a sentence,
and SQLite and PostgreSQL store the same thing. Text meant for a language model also
loses the invisible characters that reorder or hide what a reviewer reads (bidirectional
overrides and isolates), which prompt-injection tricks rely on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: C0 and C1 control characters except tab, newline and carriage return (NUL among them).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: Bidirectional embeddings and overrides (U+202A–U+202E) and isolates (U+2066–U+2069).
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: The user-information part of a URL (``user:password@``), wherever a URL appears in a text.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")

#: Largest job payload or result accepted, as JSON text.
MAX_JSON_BYTES = 1024 * 1024
#: Deepest nesting of a payload (a JSON bomb of brackets costs recursion, not bytes).
MAX_JSON_DEPTH = 32


class UnsafeText(ValueError):
    """Text or a JSON value that cannot be stored as given; ``what`` names where it came from."""

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(f"{what[:1].upper()}{what[1:]} {problem}.")
        self.what = what
        self.problem = problem


def clean_text(text: str) -> str:
    """``text`` with control characters (NUL included) removed and lone surrogates replaced by U+FFFD.

    For what a person typed (a chat message, a title): the part that can be kept is kept.
    """
    if _CONTROL.search(text):
        text = _CONTROL.sub("", text)
    if _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text


def clean_prompt(text: str) -> str:
    """:func:`clean_text`, and without the bidirectional controls that can hide text from a reader.

    For text a model or a team mate reads: requests sent to planners, history titles.
    """
    text = clean_text(text)
    return _BIDI.sub("", text) if _BIDI.search(text) else text


def clean_json(value: Any) -> Any:
    """``value`` with :func:`clean_text` applied to every string in it, keys included (a model's commands, say)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_json(item) for item in value]
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_json(v) for k, v in value.items()}
    return value


def hide_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it removed: for errors, logs and pages."""
    return _URL_USERINFO.sub(r"\g<scheme>", text)


def check_text(text: str, what: str) -> str:
    """``text`` unchanged, or :class:`UnsafeText` when a database cannot store it (a NUL, a lone surrogate)."""
    if "\x00" in text:
        raise UnsafeText(what, "contains a NUL character, which cannot be stored")
    if _SURROGATE.search(text):
        raise UnsafeText(what, "contains a lone surrogate (not valid Unicode), which cannot be stored")
    return text


def check_json(value: Any, what: str, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """``value`` unchanged if both databases store it as JSON as given; else :class:`UnsafeText` saying why.

    Refused: text with a NUL or a lone surrogate (keys too), NaN and infinities (not JSON),
    keys that are not text, objects other than dicts, lists, text, numbers, booleans and
    None, nesting deeper than :data:`MAX_JSON_DEPTH`, and more than ``max_bytes`` of JSON.
    """
    _check_json_value(value, what, 0)
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > max_bytes:
        raise UnsafeText(what, f"is {size} bytes of JSON; the limit is {max_bytes}")
    return value


def _check_json_value(value: Any, what: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise UnsafeText(what, f"is nested more than {MAX_JSON_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsafeText(what, f"contains {value}, which is not a JSON number")
        return
    if isinstance(value, str):
        check_text(value, what)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_json_value(item, what, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsafeText(what, f"has the key {key!r}; JSON keys are text")
            check_text(key, what)
            _check_json_value(item, what, depth + 1)
        return
    raise UnsafeText(what, f"contains a {type(value).__name__}, which is not a JSON value")
