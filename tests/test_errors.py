"""An error's one line: never an IndexError that hides the error being reported."""

from __future__ import annotations

import pytest

from core.errors import error_line, first_line, first_text_line


def test_an_empty_message_gives_the_class_name() -> None:
    try:
        raise RuntimeError()
    except RuntimeError as exc:
        assert first_line(exc) == "RuntimeError"


@pytest.mark.parametrize("message", ["", "   ", "\n\n", " \n\t\n"])
def test_a_blank_message_gives_the_class_name(message: str) -> None:
    assert first_line(ValueError(message)) == "ValueError"


def test_the_first_non_blank_line_stripped() -> None:
    assert first_line(OSError("\n  disk full  \nerrno 28\n")) == "disk full"
    assert first_line(KeyError("missing")) == "'missing'"


def test_text_without_a_line_is_empty() -> None:
    assert first_text_line(None) == ""
    assert first_text_line("") == ""
    assert first_text_line("\n \n") == ""
    assert first_text_line("one\ntwo") == "one"


def test_the_error_line_names_the_type_once() -> None:
    assert error_line(RuntimeError("")) == "RuntimeError"
    assert error_line(RuntimeError("boom\ntrace")) == "RuntimeError: boom"
