"""The command rules, loaded from ``core/rules.json``: the one source of truth of the contract.

Validation, merging, ordering, parameter templates, the JSON Schema for constrained
decoding and the planners' system prompt are all derived from this data
(``../shared/spec/commands.md``); nothing else in the code lists commands or paras.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

RULES_FILE = Path(__file__).with_name("rules.json")

ParaType = Literal["targets", "text", "color", "enum", "number"]
Combine = Literal["always", "never", "when_equal"]


@dataclass(frozen=True)
class ParaRule:
    name: str
    type: ParaType
    enum: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    min_exclusive: float | None = None
    allow_empty: bool = False

    @property
    def interval(self) -> str:
        """The allowed range of a number para in interval notation, e.g. ``(0, 1]``."""
        low = f"({self.min_exclusive:g}" if self.min_exclusive is not None else f"[{self.min:g}"
        return f"{low}, {self.max:g}]"

    def accepts_number(self, value: float) -> bool:
        return ((self.min is None or value >= self.min)
                and (self.min_exclusive is None or value > self.min_exclusive)
                and (self.max is None or value <= self.max))

    def describe(self) -> str:
        """How a person or a model should write this para, e.g. ``amount: number in [-1, 1]``."""
        if self.type == "targets":
            return f"{self.name}: list of labels" + (" ([] = whole image)" if self.allow_empty else "")
        if self.type == "enum":
            return f"{self.name}: one of {', '.join(self.enum)}"
        if self.type == "number":
            return f"{self.name}: number in {self.interval}"
        if self.type == "color":
            return f"{self.name}: colour name, #RRGGBB or 红/蓝/…"
        return f"{self.name}: text"


@dataclass(frozen=True)
class CommandRule:
    name: str
    description: str
    description_zh: str
    paras: tuple[ParaRule, ...]
    priority: int
    combine: Combine
    merge: dict[str, str]
    equal: tuple[str, ...]
    requires_labels: tuple[str, ...]
    generative: bool
    classical_fallback: bool
    executable: bool
    template: str | None

    def para_index(self, name: str) -> int:
        return next(i for i, p in enumerate(self.paras) if p.name == name)

    @property
    def targets_index(self) -> int | None:
        """Which para holds the targets (None for whole-image commands)."""
        return next((i for i, p in enumerate(self.paras) if p.type == "targets"), None)

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.describe() for p in self.paras)})"


@dataclass(frozen=True)
class Rules:
    version: int
    text_max_length: int
    selection_label: str
    default_labels: tuple[str, ...]
    #: A whole and the finer parts a segmenter may label apart from it ("Face" → Lips, Eyes, Eyebrows):
    #: a command on the whole also covers those parts, so retouching the face keeps the lips in it.
    contains: dict[str, tuple[str, ...]]
    commands: dict[str, CommandRule]
    defaults: dict[str, Any]
    templates: dict[str, dict[str, Any]]

    @property
    def names(self) -> list[str]:
        return list(self.commands)

    def contains_of(self, targets: Sequence[str]) -> list[str]:
        """The finer parts the targets contain (not the targets themselves), in order, without repeats."""
        return [p for p in dict.fromkeys(p for t in targets for p in self.contains.get(t, ())) if p not in targets]


def _command(name: str, data: dict[str, Any]) -> CommandRule:
    paras = tuple(
        ParaRule(
            name=p["name"], type=p["type"], enum=tuple(p.get("enum", ())), min=p.get("min"), max=p.get("max"),
            min_exclusive=p.get("min_exclusive"), allow_empty=bool(p.get("allow_empty", False)),
        )
        for p in data["paras"]
    )
    return CommandRule(
        name=name, description=data["description"], description_zh=data["description_zh"], paras=paras,
        priority=int(data["priority"]), combine=data["combine"], merge=dict(data.get("merge", {})),
        equal=tuple(data.get("equal", ())), requires_labels=tuple(data.get("requires_labels", ())),
        generative=bool(data.get("generative", False)), classical_fallback=bool(data.get("classical_fallback", False)),
        executable=bool(data.get("executable", True)), template=data.get("template"),
    )


def parse_rules(data: dict[str, Any]) -> Rules:
    return Rules(
        version=int(data["version"]),
        text_max_length=int(data["text_max_length"]),
        selection_label=data["selection_label"],
        default_labels=tuple(data["default_labels"]),
        contains={whole: tuple(parts) for whole, parts in data.get("contains", {}).items()},
        commands={name: _command(name, spec) for name, spec in data["commands"].items()},
        defaults=dict(data["defaults"]),
        templates={k: dict(v) for k, v in data["templates"].items()},
    )


@cache
def load_rules(path: Path = RULES_FILE) -> Rules:
    return parse_rules(json.loads(Path(path).read_text(encoding="utf-8")))
