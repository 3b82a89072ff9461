"""One row of a fine-tuning dataset, as every part of the dataset studio passes it around.

Importers make rows from files, generators from the rules file, an LLM or approved review
steps; cleaning dedupes, balances and splits them; exporters write them in LLaMA-Factory's and
OpenAI's formats; the database keeps them per dataset version. A row is the request, its
language, the labels of the image, the conversation before it, the expected commands, and where
it came from (provenance), plus the checks it passed or failed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

#: Where a row came from.
SOURCES = ("import", "template", "llm", "review")
#: The splits a version's rows fall into.
SPLITS = ("train", "val", "test")
LANGUAGES = ("en", "zh")

_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class DatasetRow:
    """One request → commands example. ``commands`` is the expected command array in wire form
    (``{"command": ..., "paras": [...]}`` each), in the order a planner should write it."""

    request: str
    language: str
    labels: tuple[str, ...]
    commands: tuple[Mapping[str, Any], ...]
    #: Earlier turns of the conversation before the request, (user, assistant) pairs, oldest first;
    #: the synthetic "which parts does the image have?" turn is not among them (``labels`` says it).
    conversation: tuple[tuple[str, str], ...] = ()
    source: str = "import"
    #: Which template, model, file or review step made it (e.g. "template:recolor/en/2", "gpt-4o-mini",
    #: "seed_chat_dataset.json#17", "step:42").
    origin: str | None = None
    #: The generator's seed for this row (templates and LLM sampling), when there is one.
    seed: int | None = None
    #: Each check's outcome: True when passed, else the reason it failed ("label 'Tail' is not a part any
    #: segmenter produces"). A row with a failed check is kept aside unless an admin keeps it.
    checks: Mapping[str, bool | str] = field(default_factory=dict)
    split: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"A row's source is one of {', '.join(SOURCES)}, not {self.source!r}.")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"A row's split is one of {', '.join(SPLITS)}, not {self.split!r}.")

    @property
    def failed_checks(self) -> dict[str, str]:
        """The checks this row failed, with their reasons."""
        return {name: str(outcome) for name, outcome in self.checks.items() if outcome is not True}

    @property
    def passed(self) -> bool:
        return not self.failed_checks

    @property
    def command_types(self) -> tuple[str, ...]:
        """The command names, in order (for stratified splits and balance reports)."""
        return tuple(str(c.get("command")) for c in self.commands if isinstance(c, Mapping))

    @property
    def key(self) -> str:
        """The normalized request: what near-duplicate removal and the split leakage check compare."""
        return normalize_request(self.request)

    def with_checks(self, **outcomes: bool | str) -> DatasetRow:
        return replace(self, checks={**self.checks, **outcomes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (what the database stores and tests compare)."""
        return {"request": self.request, "language": self.language, "labels": list(self.labels),
                "commands": [dict(c) for c in self.commands],
                "conversation": [list(turn) for turn in self.conversation], "source": self.source,
                "origin": self.origin, "seed": self.seed, "checks": dict(self.checks), "split": self.split}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetRow:
        return cls(request=str(data["request"]), language=str(data["language"]),
                   labels=tuple(str(x) for x in data.get("labels") or ()),
                   commands=tuple(dict(c) for c in data.get("commands") or ()),
                   conversation=tuple((str(u), str(a)) for u, a in data.get("conversation") or ()),
                   source=str(data.get("source") or "import"), origin=data.get("origin"), seed=data.get("seed"),
                   checks=dict(data.get("checks") or {}), split=data.get("split"))

    def content(self) -> tuple[Any, ...]:
        """What makes two rows the same example (provenance, checks and split aside): round trips compare this."""
        return (self.request, self.language, self.labels, tuple(_canonical(c) for c in self.commands),
                self.conversation)


def normalize_request(text: str) -> str:
    """Lower case, NFKC (full-width to half-width), punctuation and spacing removed: "Make it RED!" ~ "make it red"."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub("", _PUNCT.sub(" ", text))


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(_canonical(v) for v in value)
    return value
