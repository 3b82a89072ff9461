"""The checks every dataset row passes before it may train a planner, each a named outcome in ``row.checks``.

A row teaches a model "for this request on an image with these labels, write these
commands"; a row the contract would refuse teaches it to write what the validator throws
away (the thesis' dataset has targets such as ``Skin`` and ``Makeup`` that no segmenter
produces). So each row carries the outcome of every check: ``True``, or the reason it
failed as a sentence a person can act on. The checks, by name:

- ``parse``: the expected output is a JSON array of command objects. Importers set it
  (:func:`parse_output`); rows built from commands (templates, review) have nothing to parse.
- ``labels``: every label of the row (the image's parts, as the labels turn lists them) is
  one some segmenter produces: ``rules.default_labels`` (the union of the label sets of the
  segmenters in ``shared/spec/commands.md``) or ``rules.selection_label`` (the region a person
  selected). There is no "Whole" label in the contract: the whole image is a command without
  targets (``style``, ``instruct``) or ``adjust`` with ``[]``. A label listed twice fails too.
- ``contract``: every command validates under the contract with the row's labels
  (:func:`core.commands.validate`), failing with the validator's own reason; an empty array
  fails as well (a planner with nothing to do writes an ``advice`` command, as the system
  prompt says, and the constrained grammar allows no empty answer).
- ``merge``: a dry run of :func:`core.commands.merge` over the commands that validate loses
  nothing silently. Precisely: (1) for each command type, the set of targets over the merged
  commands equals the set over the commands before merging; (2) every merged command still
  validates (joined prompts can grow past the text limit); (3) no summed amount was clamped
  (two ``adjust`` brightness +0.8 commands would run as +1, not +1.6).
- ``round_trip``: a planner (the rule planner or a model) reads the request back to the same
  command types and, per type, the same set of targets (:func:`round_trip_check`).

``contract`` and ``merge`` are not run on a row whose output did not parse (their keys are
removed, so a stale outcome never outlives an edit); ``parse`` says why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from core.commands import Command, CommandsNotFound, extract_commands, merge, validate, validate_item
from core.rules import Rules, load_rules
from finetune.dataset_rows import DatasetRow

if TYPE_CHECKING:
    from core.planners.base import Planner

#: Every check a row can carry, in the order they run.
CHECK_NAMES = ("parse", "labels", "contract", "merge", "round_trip")
#: The checks an importer runs on every row; a row failing one is kept out unless the admin keeps it.
IMPORT_CHECKS = ("parse", "labels", "contract")

#: request, labels → command items in wire form (``{"command": ..., "paras": [...]}``).
Plan = Callable[[str, Sequence[str]], list[Mapping[str, Any]]]


def parse_output(text: str) -> list[Any] | str:
    """The command items of an expected output, or the reason it is not a JSON array of commands."""
    if not isinstance(text, str):
        return "The expected output is not text."
    try:
        items = extract_commands(text)
    except CommandsNotFound:
        shown = text.strip().replace("\n", " ")
        shown = shown if len(shown) <= 60 else shown[:60] + "…"
        return f"The expected output holds no JSON array of command objects: {shown!r}."
    return items


def known_labels(rules: Rules | None = None) -> frozenset[str]:
    """The labels some segmenter produces, plus the selection label."""
    rules = rules or load_rules()
    return frozenset((*rules.default_labels, rules.selection_label))


def labels_outcome(labels: Sequence[str], rules: Rules | None = None) -> bool | str:
    rules = rules or load_rules()
    known = known_labels(rules)
    unknown = list(dict.fromkeys(label for label in labels if label not in known))
    if unknown:
        names = ", ".join(repr(label) for label in unknown)
        return (f"Label{'s' if len(unknown) > 1 else ''} {names} {'are' if len(unknown) > 1 else 'is'} not a part "
                "any segmenter produces.")
    repeated = [label for label, count in _counts(labels).items() if count > 1]
    if repeated:
        return f"Label {repeated[0]!r} is listed more than once."
    return True


def contract_outcome(commands: Sequence[Any], labels: Sequence[str], rules: Rules | None = None) -> bool | str:
    if not commands:
        return "The expected output has no commands; a row needs at least one (an 'advice' when nothing can be done)."
    outcome = validate(list(commands), labels, rules)
    if outcome.rejections:
        first = outcome.rejections[0]
        more = f" ({len(outcome.rejections) - 1} more command(s) fail too)" if len(outcome.rejections) > 1 else ""
        return f"Command {first.index + 1}: {first.reason}{more}"
    return True


def merge_outcome(commands: Sequence[Any], labels: Sequence[str], rules: Rules | None = None) -> bool | str:
    rules = rules or load_rules()
    valid = validate(list(commands), labels, rules).commands
    merged = merge(valid, rules)
    before, after = _targets_by_type(valid, rules), _targets_by_type(merged, rules)
    for name, targets in before.items():
        lost = targets - after.get(name, set())
        if lost:
            return f"Merging the '{name}' commands loses target(s) {', '.join(sorted(lost))}."
    for command in merged:
        reason = validate_item(command.to_wire(), labels, rules)
        if isinstance(reason, str):
            return f"Merging the '{command.command}' commands gives one that does not validate: {reason}"
    clamped = _clamped_sum(valid, rules)
    return clamped or True


def check_row(row: DatasetRow, rules: Rules | None = None) -> DatasetRow:
    """The row with its ``labels``, ``contract`` and ``merge`` outcomes (``parse`` is the importer's)."""
    rules = rules or load_rules()
    outcomes: dict[str, bool | str] = {"labels": labels_outcome(row.labels, rules)}
    checks = dict(row.checks)
    if checks.get("parse", True) is True:
        outcomes["contract"] = contract_outcome(row.commands, row.labels, rules)
        outcomes["merge"] = merge_outcome(row.commands, row.labels, rules)
    else:
        checks.pop("contract", None)
        checks.pop("merge", None)
    return replace(row, checks={**checks, **outcomes})


def round_trip_check(row: DatasetRow, plan: Plan, rules: Rules | None = None) -> DatasetRow:
    """The row with its ``round_trip`` outcome: ``plan`` reads the request back to the same types and targets.

    Targets are compared as a set per command type (two ``recolor`` commands on Hair and on
    Pants equal one on both); paras other than targets (prompts, colours, amounts) are not
    compared, since a paraphrase may say "crimson" for "red". Errors of ``plan`` itself (a
    model that cannot be reached) propagate: they say nothing about the row.
    """
    rules = rules or load_rules()
    expected = _item_targets(row.commands, rules)
    got = _item_targets(plan(row.request, tuple(row.labels)), rules)
    return row.with_checks(round_trip=True if got == expected else _difference(expected, got))


def planner_plan(planner: Planner) -> Plan:
    """A :data:`Plan` from a planner of ``core.planners`` (e.g. ``make_planner("rules")``): its valid commands."""

    def plan(request: str, labels: Sequence[str]) -> list[Mapping[str, Any]]:
        return planner.plan(request, labels=list(labels)).wire()

    return plan


# -- helpers -----------------------------------------------------------------------------------


def _counts(values: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _targets_by_type(commands: Sequence[Command], rules: Rules) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for command in commands:
        found[command.command].update(command.targets(rules))
    return found


def _item_targets(items: Sequence[Any], rules: Rules) -> dict[str, frozenset[str]]:
    """Per command type, the union of its targets (items of unknown shape count by name, without targets)."""
    found: dict[str, set[str]] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("command"), str):
            continue
        name = item["command"]
        found.setdefault(name, set())  # a command without targets is still a command type
        rule = rules.commands.get(name)
        paras = item.get("paras")
        index = rule.targets_index if rule else None
        if index is not None and isinstance(paras, Sequence) and len(paras) > index:
            value = paras[index]
            if isinstance(value, Sequence) and not isinstance(value, str):
                found[name].update(str(t) for t in value)
    return {name: frozenset(targets) for name, targets in found.items()}


def _difference(expected: Mapping[str, frozenset[str]], got: Mapping[str, frozenset[str]]) -> str:
    parts = []
    missing = [name for name in expected if name not in got]
    extra = [name for name in got if name not in expected]
    if missing:
        parts.append(f"no {', '.join(repr(n) for n in missing)} command")
    if extra:
        parts.append(f"an extra {', '.join(repr(n) for n in extra)} command")
    for name in expected:
        if name in got and got[name] != expected[name]:
            parts.append(f"'{name}' targets {_names(got[name])} instead of {_names(expected[name])}")
    return "The request reads back with " + "; ".join(parts) + "."


def _names(targets: frozenset[str]) -> str:
    return ", ".join(sorted(targets)) if targets else "the whole image"


def _clamped_sum(commands: Sequence[Command], rules: Rules) -> str | None:
    """The reason a summed para (``sum_clamp``) would be clamped by merging, or None."""
    sums: dict[tuple[Any, ...], float] = {}
    for command in commands:
        rule = rules.commands[command.command]
        if rule.combine == "never":
            continue
        key_paras = tuple(command.paras[rule.para_index(n)] for n in rule.equal) if rule.combine == "when_equal" else ()
        for para, how in rule.merge.items():
            if how != "sum_clamp":
                continue
            key = (rule.name, para, *key_paras)
            sums[key] = round(sums.get(key, 0.0) + float(command.paras[rule.para_index(para)]), 6)
            if not -1.0 <= sums[key] <= 1.0:
                detail = f" {key_paras[0]}" if key_paras and isinstance(key_paras[0], str) else ""
                return (f"The '{rule.name}'{detail} {para}s add up to {sums[key]:g}, which merging clamps to "
                        f"{max(-1.0, min(1.0, sums[key])):g}.")
    return None
