"""The command contract in code: extract, validate, merge, order, resolve parameters.

Everything a planner writes is untrusted input: it is parsed against the closed
allow-list of ``core/rules.json``, never evaluated, never turned into a path or SQL.
Each rejection carries a reason a person can read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.colors import InvalidColor, parse_color
from core.rules import CommandRule, ParaRule, Rules, load_rules


class CommandsNotFound(ValueError):
    """The planner's reply holds no JSON array of command objects (it counts as invalid)."""

    def __init__(self, text: str) -> None:
        super().__init__("The reply contains no list of commands.")
        self.text = text


@dataclass(frozen=True)
class Command:
    """A validated command: a name from the rules and its positional paras."""

    command: str
    paras: tuple[Any, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"command": self.command, "paras": [list(p) if isinstance(p, tuple) else p for p in self.paras]}

    def targets(self, rules: Rules | None = None) -> tuple[str, ...]:
        index = (rules or load_rules()).commands[self.command].targets_index
        return () if index is None else tuple(self.paras[index])


@dataclass(frozen=True)
class Rejection:
    """An item of the reply that is not a valid command here, and why."""

    index: int
    item: Any
    reason: str


@dataclass
class Validation:
    commands: list[Command] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def extract_commands(text: str) -> list[Any]:
    """The first JSON array in ``text`` whose items are all command objects (prose and ``` fences allowed)."""
    decoder = json.JSONDecoder()
    start = text.find("[")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):  # a model's "[[[[…" deeper than the decoder's stack
            value = None
        if isinstance(value, list) and value and all(isinstance(v, dict) and "command" in v for v in value):
            return value
        if value == []:
            return []
        start = text.find("[", start + 1)
    raise CommandsNotFound(text)


def _labels_sentence(labels: Collection[str]) -> str:
    return ", ".join(sorted(labels)) if labels else "none"


def _check_para(rule: CommandRule, para: ParaRule, value: Any, labels: Collection[str], rules: Rules) -> str | None:
    """None when ``value`` is acceptable, else the reason it is not."""
    where = f"'{rule.name}' {para.name}"
    if para.type == "targets":
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            return f"{where} must be a list of labels."
        if not value and not para.allow_empty:
            return f"{where} must name at least one part of the image."
        missing = [t for t in value if t not in labels]
        if missing == [rules.selection_label]:
            return "Nothing is selected: select an area under Selection tools first."
        if missing and not set(labels) - {rules.selection_label}:
            return (f"This image has no {', '.join(repr(m) for m in missing)}: no parts were found in it; "
                    "select the area under Selection tools and use Selection instead.")
        if missing:
            return (f"This image has no {', '.join(repr(m) for m in missing)}; "
                    f"its parts are {_labels_sentence(labels)}.")
        return None
    if para.type in ("text", "color", "enum"):
        if not isinstance(value, str) or not value.strip():
            return f"{where} must be non-empty text."
        if len(value) > rules.text_max_length:
            return f"{where} is {len(value)} characters long; at most {rules.text_max_length} are allowed."
        if para.type == "enum" and value not in para.enum:
            return f"{where} must be one of {', '.join(para.enum)}, not {value!r}."
        if para.type == "color":
            try:
                parse_color(value)
            except InvalidColor as exc:
                return str(exc)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{where} must be a number."
    if not para.accepts_number(value):
        return f"{where} {value:g} is outside {para.interval}."
    return None


def validate_item(item: Any, labels: Collection[str], rules: Rules | None = None) -> Command | str:
    """A valid :class:`Command`, or the reason ``item`` is not one."""
    rules = rules or load_rules()
    if not isinstance(item, dict) or not isinstance(item.get("command"), str):
        return "This item is not a command object."
    name = item["command"]
    rule = rules.commands.get(name)
    if rule is None:
        shown = name if len(name) <= 40 else name[:40] + "…"
        return f"{shown!r} is not a command; use one of {', '.join(rules.names)}."
    extra = set(item) - {"command", "paras"}
    if extra:
        return f"'{name}' has unexpected fields {', '.join(sorted(map(str, extra)))}."
    paras = item.get("paras")
    if not isinstance(paras, list):
        return f"'{name}' needs its parameters as a list: {rule.signature()}."
    if len(paras) != len(rule.paras):
        return f"'{name}' takes {len(rule.paras)} parameter(s), {rule.signature()}; got {len(paras)}."
    for para, value in zip(rule.paras, paras, strict=True):
        reason = _check_para(rule, para, value, labels, rules)
        if reason:
            return reason
    for needed in rule.requires_labels:
        if needed not in labels:
            return f"'{name}' needs a {needed} in the image, and none was found."
    return Command(name, tuple(tuple(v) if isinstance(v, list) else v for v in paras))


def validate(items: Sequence[Any], labels: Collection[str], rules: Rules | None = None) -> Validation:
    """Split a planner's items into valid commands and rejections with reasons."""
    result = Validation()
    for index, item in enumerate(items):
        outcome = validate_item(item, labels, rules)
        if isinstance(outcome, Command):
            result.commands.append(outcome)
        else:
            result.rejections.append(Rejection(index, item, outcome))
    return result


def _merge_pair(rule: CommandRule, first: Command, second: Command) -> Command:
    paras = list(first.paras)
    for name, how in rule.merge.items():
        i = rule.para_index(name)
        a, b = first.paras[i], second.paras[i]
        if how == "union":
            paras[i] = tuple(dict.fromkeys([*a, *b]))
        elif how == "join":
            paras[i] = a if b in a.split(", ") else f"{a}, {b}"
        elif how == "sum_clamp":
            paras[i] = max(-1.0, min(1.0, round(a + b, 6)))
        else:
            raise ValueError(f"rules.json: unknown merge {how!r} for {rule.name}.{name}")
    return Command(first.command, tuple(paras))


def _merge_key(rule: CommandRule, command: Command) -> tuple[Any, ...] | None:
    if rule.combine == "always":
        return (rule.name,)
    if rule.combine == "when_equal":
        return (rule.name, *(command.paras[rule.para_index(n)] for n in rule.equal))
    return None


def merge(commands: Sequence[Command], rules: Rules | None = None) -> list[Command]:
    """Combine commands per the rules; a merged command keeps its first occurrence's place."""
    rules = rules or load_rules()
    merged: list[Command] = []
    slot: dict[tuple[Any, ...], int] = {}
    for command in commands:
        rule = rules.commands[command.command]
        key = _merge_key(rule, command)
        if key is not None and key in slot:
            merged[slot[key]] = _merge_pair(rule, merged[slot[key]], command)
            continue
        if key is not None:
            slot[key] = len(merged)
        merged.append(command)
    return merged


def order(commands: Sequence[Command], rules: Rules | None = None) -> list[Command]:
    """Highest priority first; equal priorities keep the person's order (a stable sort)."""
    rules = rules or load_rules()
    return sorted(commands, key=lambda c: -rules.commands[c.command].priority)


def execution_plan(commands: Sequence[Command], rules: Rules | None = None) -> tuple[list[Command], list[Command]]:
    """Merged and ordered commands to run, and the advice to show (never run)."""
    rules = rules or load_rules()
    ordered = order(merge(commands, rules), rules)
    runnable = [c for c in ordered if rules.commands[c.command].executable]
    advice = [c for c in ordered if not rules.commands[c.command].executable]
    return runnable, advice


def resolve_params(
    command: Command,
    *,
    user_settings: Mapping[str, Any] | None = None,
    command_params: Mapping[str, Any] | None = None,
    rules: Rules | None = None,
) -> dict[str, Any]:
    """A command's request parameters: command > person's settings > template > defaults (thesis Algorithm 4)."""
    rules = rules or load_rules()
    rule = rules.commands[command.command]
    params: dict[str, Any] = dict(rules.defaults)
    if rule.template:
        params.update(rules.templates[rule.template])
    params.update({k: v for k, v in (user_settings or {}).items() if v is not None})
    params.update({k: v for k, v in (command_params or {}).items() if v is not None})
    return params
