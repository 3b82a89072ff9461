"""The rule planner on requests it was never tuned on: how new people phrase edits, in English and Chinese.

``tests/data/heldout_requests.json`` was written fresh for issue 17 (complaints, softening words, the
selection, sides of the body, face attributes, whole-image looks, several clauses, and parts the image
lacks) and split into a dev half, looked at while improving the planner, and a test half, only scored.
The floors below sit a little under the measured figures so that a regression in how the planner reads
a *kind* of request fails here. Run ``python -m tests.test_planner_heldout`` for the table in
``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.colors import InvalidColor, parse_color
from core.commands import Command, merge, order, validate
from core.planners.rule_planner import RulePlanner
from core.rules import Rules, load_rules

HELDOUT = Path(__file__).parent / "data" / "heldout_requests.json"
KINDS = ("complaint", "softening", "selection", "side", "face", "look", "multi", "refusal")

#: Amount sizes: a softened change, a plain one, a strong one (the planners' 0.15 / 0.3 / 0.6 steps).
_AMOUNT_EDGES = (0.2, 0.45)
#: Blur strengths: a little, plain, a lot (0.25 / 0.5 / 1.0).
_STRENGTH_EDGES = (0.35, 0.75)
_STOP_EN = frozenset("a an the and or of to with in on for her his him she he it its this that make more less "
                     "look looks some bit little very".split())
_STOP_ZH = frozenset("的了一点把让她他它些更得很太稍微再加个下成变换")


@dataclass(frozen=True)
class Entry:
    request: str
    language: str
    labels: tuple[str, ...]
    expected: list[dict[str, Any]]
    kind: str
    split: str


@dataclass(frozen=True)
class Outcome:
    """One request scored: same command types and targets (and adjust property), and the whole program."""

    entry: Entry
    produced: list[dict[str, Any]]
    types_targets: bool
    exact: bool


def load_heldout(path: Path = HELDOUT) -> list[Entry]:
    """The held-out entries; raises ValueError with a sentence when an entry breaks the contract."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rules = load_rules()
    entries = []
    for raw in data["entries"]:
        entry = Entry(raw["request"], raw["language"], tuple(raw["labels"]), raw["expected"], raw["kind"],
                      raw["split"])
        rejections = validate(entry.expected, entry.labels, rules).rejections
        if rejections:
            raise ValueError(f"The expected program of {entry.request!r} is invalid: {rejections[0].reason}")
        entries.append(entry)
    return entries


def canonical(items: Sequence[Any], labels: Sequence[str], rules: Rules) -> list[Command]:
    """Valid commands merged and ordered as they would run: two spellings of one program compare equal."""
    return order(merge(validate(items, labels, rules).commands, rules), rules)


def _size(value: float, edges: tuple[float, float]) -> tuple[int, int]:
    magnitude = abs(value)
    return (1 if value > 0 else -1 if value < 0 else 0, sum(magnitude > edge for edge in edges))


def _key_words(text: str) -> set[str]:
    words = {w.rstrip("s") for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP_EN and len(w) > 2}
    return words | {ch for ch in text if "\u4e00" <= ch <= "\u9fff" and ch not in _STOP_ZH}


def _same_script(first: str, second: str) -> bool:
    def cjk(text: str) -> bool:
        return any("\u4e00" <= ch <= "\u9fff" for ch in text)
    return cjk(first) == cjk(second)


def _color(text: str) -> tuple[int, int, int] | str:
    try:
        return parse_color(text)
    except InvalidColor:
        return text


def _para_matches(kind: str, expected: Any, produced: Any) -> bool:
    """A para within its tolerance: amounts by sign and size, colours by value, prompts by a shared key word.

    A prompt in the other script than expected (a Chinese request's prompt kept in Chinese, or translated)
    is not compared word by word; its command and targets already are.
    """
    if kind == "amount":
        return _size(expected, _AMOUNT_EDGES) == _size(produced, _AMOUNT_EDGES)
    if kind == "strength":
        return _size(expected, _STRENGTH_EDGES) == _size(produced, _STRENGTH_EDGES)
    if kind == "color":
        return _color(expected) == _color(produced)
    if kind == "text":
        if not _same_script(expected, produced):
            return True
        return bool(_key_words(expected) & _key_words(produced))
    if kind == "targets":
        return sorted(expected) == sorted(produced)
    return expected == produced


def _para_kinds(command: str, rules: Rules) -> list[str]:
    kinds = []
    for para in rules.commands[command].paras:
        if para.type == "number":
            kinds.append("amount" if para.name == "amount" else "strength")
        else:
            kinds.append(para.type if para.type in ("color", "text", "targets") else "exact")
    return kinds


def _skeleton(commands: Iterable[Command], rules: Rules) -> list[tuple[Any, ...]]:
    """Command types with their targets (and an adjustment's property): what was meant, before the amounts."""
    out = []
    for command in commands:
        extra = (command.paras[0],) if command.command == "adjust" else ()
        out.append((command.command, tuple(sorted(command.targets(rules))), *extra))
    return out


def score(entry: Entry, produced: Sequence[Any], rules: Rules) -> Outcome:
    want = canonical(entry.expected, entry.labels, rules)
    got = canonical(produced, entry.labels, rules)
    types_targets = _skeleton(want, rules) == _skeleton(got, rules)
    exact = types_targets and all(
        _para_matches(kind, w, g)
        for a, b in zip(want, got)
        for kind, w, g in zip(_para_kinds(a.command, rules), a.paras, b.paras))
    return Outcome(entry, [c.to_wire() for c in got], types_targets, exact)


def run(planner: Any, entries: Sequence[Entry]) -> list[Outcome]:
    rules = load_rules()
    return [score(e, planner.plan(e.request, labels=e.labels).wire(), rules) for e in entries]


def rate(outcomes: Sequence[Outcome], field: str = "exact") -> float:
    return sum(getattr(o, field) for o in outcomes) / len(outcomes) if outcomes else 0.0


def table(outcomes: Sequence[Outcome]) -> dict[str, dict[str, tuple[int, float, float]]]:
    """Rates by group: kind, split, language and overall → (n, types+targets, exact)."""
    groups: dict[str, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        groups["kind"][o.entry.kind].append(o)
        groups["split"][o.entry.split].append(o)
        groups["language"][o.entry.language].append(o)
        groups["split x language"][f"{o.entry.split} {o.entry.language}"].append(o)
        groups["kind x split"][f"{o.entry.kind} {o.entry.split}"].append(o)
        groups["all"]["all"].append(o)
    return {g: {k: (len(v), rate(v, "types_targets"), rate(v, "exact")) for k, v in sorted(items.items())}
            for g, items in groups.items()}


# --- tests -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    return run(RulePlanner(), load_heldout())


def test_the_heldout_set_is_sound_and_balanced() -> None:
    entries = load_heldout()
    assert len(entries) >= 200
    assert {e.kind for e in entries} == set(KINDS)
    by_language = defaultdict(int)
    for e in entries:
        by_language[e.language] += 1
        assert e.split in ("dev", "test")
        assert ("Selection" in e.labels) <= ("Selection" in json.dumps(e.expected) or e.kind == "refusal"
                                             or e.kind == "selection")
    assert abs(by_language["en"] - by_language["zh"]) <= len(entries) // 10
    assert len({(e.request, e.labels) for e in entries}) == len(entries)


def test_test_half_reaches_the_measured_figure(outcomes: list[Outcome]) -> None:
    test = [o for o in outcomes if o.entry.split == "test"]
    misses = [(o.entry.request, o.produced) for o in test if not o.exact]
    # Measured on the test half: see TEST_EXACT_MEASURED; the floor leaves room for one or two phrasings.
    assert rate(test) >= TEST_EXACT_FLOOR, misses  # measured TEST_EXACT_MEASURED
    assert rate(test, "types_targets") >= TEST_TYPES_FLOOR, misses


@pytest.mark.parametrize("language", ["en", "zh"])
def test_both_languages_are_read(outcomes: list[Outcome], language: str) -> None:
    mine = [o for o in outcomes if o.entry.language == language]
    assert rate(mine) >= LANGUAGE_EXACT_FLOOR, [(o.entry.request, o.produced) for o in mine if not o.exact]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_phrasing_is_read(outcomes: list[Outcome], kind: str) -> None:
    mine = [o for o in outcomes if o.entry.kind == kind]
    assert rate(mine) >= KIND_EXACT_FLOOR, [(o.entry.request, o.produced) for o in mine if not o.exact]


def test_correct_refusals_hold(outcomes: list[Outcome]) -> None:
    """A part the image lacks gives no command for it: never a guessed substitute."""
    refusals = [o for o in outcomes if o.entry.kind == "refusal" and o.entry.request not in KNOWN_SUBSTITUTES]
    assert len(refusals) >= 24
    for o in refusals:
        assert o.types_targets, (o.entry.request, o.produced)
        if not o.entry.expected:
            assert o.produced == [], (o.entry.request, o.produced)


def test_every_produced_command_is_valid_for_its_image() -> None:
    rules = load_rules()
    planner = RulePlanner()
    for entry in load_heldout():
        wire = planner.plan(entry.request, labels=entry.labels).wire()
        assert not validate(wire, entry.labels, rules).rejections, entry.request


def test_softening_words_never_turn_into_stronger_changes(outcomes: list[Outcome]) -> None:
    """"A touch brighter" / "稍微淡一点" move less than a plain request, and in the direction meant."""
    for o in outcomes:
        if o.entry.kind != "softening":
            continue
        for want, got in zip(o.entry.expected, o.produced):
            if want["command"] == got["command"] == "adjust" and want["paras"][0] == got["paras"][0]:
                assert want["paras"][1] * got["paras"][1] > 0, (o.entry.request, o.produced)
                assert abs(got["paras"][1]) <= abs(want["paras"][1]) * 2 + 1e-9, (o.entry.request, o.produced)


def test_the_scorer_tolerates_spelling_not_meaning() -> None:
    rules = load_rules()
    entry = Entry("x", "en", ("Background", "Upper-clothes"), [
        {"command": "adjust", "paras": ["brightness", 0.3, []]},
        {"command": "recolor", "paras": [["Upper-clothes"], "red"]}], "multi", "dev")
    same = [{"command": "recolor", "paras": [["Upper-clothes"], "#ff0000"]},
            {"command": "adjust", "paras": ["brightness", 0.1, []]},
            {"command": "adjust", "paras": ["brightness", 0.25, []]}]
    assert score(entry, same, rules).exact
    wrong_sign = [{"command": "adjust", "paras": ["brightness", -0.3, []]},
                  {"command": "recolor", "paras": [["Upper-clothes"], "red"]}]
    outcome = score(entry, wrong_sign, rules)
    assert outcome.types_targets and not outcome.exact
    assert not score(entry, [], rules).types_targets


# Measured on 2026-12-07 after the improvement (docs/benchmarks.md); before it: test half 67.3% exact, 77.9% types.
TEST_EXACT_MEASURED = 0.933  # 97 of 104 on the test half (dev half: 104 of 104)
TEST_TYPES_MEASURED = 0.952  # 99 of 104
TEST_EXACT_FLOOR = 0.90
TEST_TYPES_FLOOR = 0.92
LANGUAGE_EXACT_FLOOR = 0.92  # measured: English 97.1%, Chinese 96.2% (both halves)
KIND_EXACT_FLOOR = 0.88  # measured: 96.2% to 100% per kind; before: complaints 7.7%, looks 61.5%
#: Refusals the planner does not make, on purpose, and why (each one is a miss in the figures above).
KNOWN_SUBSTITUTES = {
    "把连衣裙换成蓝色": "连衣裙 falls back to the Skirt label, as the seed dataset labels it (English 'dress' does not)",
}


def main() -> None:
    outcomes = run(RulePlanner(), load_heldout())
    for group, rows in table(outcomes).items():
        print(f"## {group}")
        for key, (n, tt, ex) in rows.items():
            print(f"  {key:12s} n={n:3d}  types+targets {tt:6.1%}  exact {ex:6.1%}")
    if "-v" in sys.argv:
        for o in outcomes:
            if not o.exact and (o.entry.split == "dev" or "--all" in sys.argv):
                print(f"MISS [{o.entry.kind}/{o.entry.split}] {o.entry.request!r}\n   want {o.entry.expected}\n"
                      f"   got  {o.produced}")


if __name__ == "__main__":
    main()
