"""Planner metrics, per example and aggregated: is the program right, and when it is not, how it is wrong.

The thesis judged planners by one number, the share of valid commands. A valid command can
still be the wrong one, so every example is scored on several levels, from "did the reply
parse" to "are the paras close enough", and every miss gets an error type (see
:data:`ERROR_TYPES`). The CLI (``chatedit eval planner``), the ``eval_run`` job and the
Evaluation page all call :func:`score_example` and :func:`aggregate`, so they show the same
numbers.

Definitions (the page's help text repeats them):

- **parsed**: the reply yields a JSON array of command objects (``core.commands.extract_commands``),
  or the planner handed its command list over directly. ``[]`` is a parsed, empty program.
- **schema-valid** (the thesis metric): parsed, and every item is a known command whose paras have
  the contract's shape, labels aside. An empty array is schema-valid.
- **label-valid**: parsed, and no item names a label the image lacks (nor ``face`` without ``Face``).
- **valid**: every item passes ``core.commands.validate`` against the image's labels.
- **canonical program**: the valid commands merged (``core.commands.merge``), then commands that the
  rules never merge but that do the same thing to different parts (``recolor`` red on Hair and on
  Pants, the same ``blur`` or ``adjust`` on two parts) unioned into one, targets sorted, ordered by
  priority and then by content. Colours compare as sRGB triples (``core.colors.parse_color``), so
  ``"red" == "#ff0000" == "#f00"``, but ``"红"`` (crimson, 220/20/60) is not exactly ``"red"``: it is
  within the colour tolerance, so it counts for parameter accuracy, not for exact match. Texts
  compare after NFKC, case folding and whitespace collapsing; numbers after rounding to 6 places.
- **exact match**: valid, and the canonical programs are equal.
- **pairs**: each canonical command is a ``(command, frozenset(targets))`` pair; precision, recall
  and F1 count pairs (multisets). An item that fails validation is a false positive.
- **matching** (for target and parameter accuracy and the confusion matrix): expected and produced
  canonical commands are paired greedily, same command type first, then by the overlap (Jaccard)
  of their target sets, then by whether their paras agree. Whole-image commands overlap through
  implicit targets: ``face`` covers ``Face``; ``style``, ``instruct`` and ``adjust`` on ``[]``
  cover the whole image. Commands of different types are paired only when their targets overlap.
  The confusion matrix counts each pair (expected type → produced type), each unpaired expected
  command as ``type → none`` (an unparsable reply's commands too, so a row sums to the expected
  commands of that type) and each unpaired produced command as ``none → type``. Items that fail
  validation are not in it: they are counted by their error types.
- **macro F1**: the mean over command types present on either side of the per-type pair F1
  (scikit-learn's convention: a type only produced, never expected, has F1 0 and lowers it).
- **target accuracy**: over same-type pairs, the share whose target sets are equal.
- **parameter accuracy**: over same-type pairs that have paras besides targets, the share whose
  every para is within its tolerance (see :func:`para_matches`).
- **refusal**: an example whose expected program is empty (the image cannot satisfy the request)
  is answered correctly by an empty program. An expected program that is not empty, answered by
  ``[]``, is a ``missing_command`` miss (counted as a false refusal), not a refusal.
"""

from __future__ import annotations

import colorsys
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core.colors import InvalidColor, parse_color
from core.commands import Command, CommandsNotFound, extract_commands, merge, validate_item
from core.rules import CommandRule, ParaRule, Rules, load_rules
from finetune.dataset_rows import DatasetRow

#: Every kind of miss, most severe first: an example's primary error is the first of its errors here.
ERROR_TYPES: tuple[str, ...] = (
    "unparsable",       # the reply holds no JSON array of command objects
    "unknown_command",  # an item that is not one of the contract's commands
    "bad_paras",        # a known command with missing, extra or ill-typed paras (or numbers out of range)
    "wrong_label",      # a target the image lacks (or face without Face)
    "missed_refusal",   # commands for a request whose expected program is empty
    "missing_command",  # an expected command nothing produced matches (a false refusal gives these)
    "extra_command",    # a produced command that matches nothing expected
    "wrong_command",    # a produced command paired with an expected one of another type (targets overlap)
    "wrong_target",     # the right command type on other targets
    "wrong_para",       # the right command and targets, a para outside its tolerance
)

#: The scalar metrics, in the order the CLI and the page show them.
METRIC_NAMES: tuple[str, ...] = (
    "examples",
    "parse_rate",
    "schema_validity",
    "label_validity",
    "validity",
    "valid_command_share",
    "exact_match",
    "precision_micro",
    "recall_micro",
    "f1_micro",
    "f1_macro",
    "f1_example",
    "command_type_accuracy",
    "target_accuracy",
    "parameter_accuracy",
    "refusal_accuracy",
    "false_refusal_rate",
    "error_rate",
    "latency_p50_s",
    "latency_p95_s",
    "latency_mean_s",
    "prompt_tokens_total",
    "completion_tokens_total",
    "prompt_tokens_mean",
    "completion_tokens_mean",
)

#: How a person reads each metric name (the page's column headers, the CLI's first column).
METRIC_LABELS: dict[str, str] = {
    "examples": "Examples",
    "parse_rate": "Parse rate",
    "schema_validity": "Schema validity (thesis metric)",
    "label_validity": "Label validity",
    "validity": "Validity (schema and labels)",
    "valid_command_share": "Valid commands (share of items)",
    "exact_match": "Exact match (canonical program)",
    "precision_micro": "Command precision (micro)",
    "recall_micro": "Command recall (micro)",
    "f1_micro": "Command F1 (micro)",
    "f1_macro": "Command F1 (macro over types)",
    "f1_example": "Command F1 (mean per example)",
    "command_type_accuracy": "Command-type accuracy",
    "target_accuracy": "Target accuracy",
    "parameter_accuracy": "Parameter accuracy",
    "refusal_accuracy": "Correct refusals",
    "false_refusal_rate": "False refusals",
    "error_rate": "Examples with an error",
    "latency_p50_s": "Latency p50 (s)",
    "latency_p95_s": "Latency p95 (s)",
    "latency_mean_s": "Latency mean (s)",
    "prompt_tokens_total": "Prompt tokens (total)",
    "completion_tokens_total": "Completion tokens (total)",
    "prompt_tokens_mean": "Prompt tokens (mean)",
    "completion_tokens_mean": "Completion tokens (mean)",
}

#: The metrics computed per language and shown side by side (a subset of METRIC_NAMES).
LANGUAGE_METRICS: tuple[str, ...] = (
    "examples", "parse_rate", "schema_validity", "validity", "exact_match", "f1_micro", "command_type_accuracy",
    "target_accuracy", "parameter_accuracy", "refusal_accuracy", "error_rate", "latency_p50_s",
)

#: What the confusion matrix calls "no command on this side" (a missing or an extra command).
NONE = "none"

# -- tolerances ---------------------------------------------------------------------------------

#: Two chromatic colours agree when their hues are at most this many degrees apart ...
HUE_TOLERANCE_DEG = 30.0
#: ... and (chromatic or not) their HLS lightness differs by at most this much (0..1).
LIGHTNESS_TOLERANCE = 0.25
#: A colour is achromatic (white, grey, black, silver) below this HLS saturation or at extreme lightness;
#: an achromatic colour agrees only with another achromatic one of close lightness.
ACHROMATIC_SATURATION = 0.2
ACHROMATIC_LIGHTNESS = (0.1, 0.92)
#: Two amounts agree when they have the same sign and either differ by at most AMOUNT_ABS_TOLERANCE
#: or the larger is at most AMOUNT_FACTOR times the smaller (0.3 vs 0.5 agree; 0.2 vs 0.6 do not).
AMOUNT_ABS_TOLERANCE = 0.15
AMOUNT_FACTOR = 2.0
#: Two prompts agree when the produced one contains at least this share of the expected one's key words.
PROMPT_KEYWORD_SHARE = 0.5

_EN_STOPWORDS = frozenset(
    "a an the and or of to in on at for with by from into onto as is are be been it its this that these those "
    "my your her his their our me him them make made making more less bit little very some slightly please "
    "so too just also then than same like look looks looking".split())
#: Chinese function characters and the suffixes that vary between equal phrasings (红色 = 红, 裙子 = 裙).
_ZH_STOPCHARS = frozenset("的了着和与及把将让使更加很一些点个得地也都在为是有成要请再色子")
_TOKEN = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]")
_CJK = re.compile(r"[\u3400-\u9fff]")
_SPACE = re.compile(r"\s+")


class InvalidReference(ValueError):
    """An expected program that does not pass the contract: such a row cannot be scored."""


# -- per example ---------------------------------------------------------------------------------


@dataclass
class ExampleScore:
    """One example's score. ``expected`` and ``produced`` are the canonical programs in wire form."""

    language: str
    labels: list[str]
    expected: list[dict[str, Any]]
    produced: list[dict[str, Any]]
    request: str = ""
    reply: str | None = None
    parsed: bool = False
    schema_valid: bool = False
    label_valid: bool = False
    valid: bool = False
    exact_match: bool = False
    #: Items the reply held, and how many of them passed validation.
    items: int = 0
    valid_items: int = 0
    #: Pair counts: true positives, false positives (invalid items included), false negatives.
    tp: int = 0
    fp: int = 0
    fn: int = 0
    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0
    type_match: bool = False
    #: Same-type matched pairs, and how many of them have equal targets.
    target_pairs: int = 0
    target_correct: int = 0
    #: Same-type matched pairs with paras besides targets, and how many of them agree within tolerance.
    para_pairs: int = 0
    para_correct: int = 0
    #: Per para kind (color, number, enum, text): [agreeing, compared].
    para_kinds: dict[str, list[int]] = field(default_factory=dict)
    refusal_expected: bool = False
    refused: bool = False
    #: Per command type: [tp, fp, fn] of pairs.
    per_command: dict[str, list[int]] = field(default_factory=dict)
    #: (expected type, produced type) of every matched pair, and (type, "none") / ("none", type) of the rest.
    confusion: list[list[str]] = field(default_factory=list)
    #: The distinct error types, in ERROR_TYPES order; ``primary_error`` is the first (None when right).
    errors: list[str] = field(default_factory=list)
    primary_error: str | None = None
    #: Each miss: its type, the command name (when there is one) and a sentence saying what went wrong.
    misses: list[dict[str, Any]] = field(default_factory=list)
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def target_accuracy(self) -> float | None:
        return self.target_correct / self.target_pairs if self.target_pairs else None

    @property
    def parameter_accuracy(self) -> float | None:
        return self.para_correct / self.para_pairs if self.para_pairs else None

    @property
    def correct_refusal(self) -> bool | None:
        """None when the example expected commands; else whether the planner gave none."""
        return (self.parsed and self.refused) if self.refusal_expected else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the ``eval_examples.score`` column); :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExampleScore:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def score_example(
    expected: Sequence[Mapping[str, Any]],
    reply: str | None,
    produced: Sequence[Any] | None,
    *,
    labels: Collection[str],
    language: str,
    latency_s: float | None = None,
    tokens: Mapping[str, int | None] | tuple[int | None, int | None] | int | None = None,
    rules: Rules | None = None,
    request: str = "",
) -> ExampleScore:
    """Score what a planner produced against the expected command array (wire form) on an image with ``labels``.

    ``produced`` is the planner's item list (wire dicts or :class:`~core.commands.Command`) when it has
    one; otherwise ``reply`` is parsed. Both None, or a reply without a command array, is unparsable.
    ``tokens``: ``{"prompt": n, "completion": m}`` (either may be absent), a ``(prompt, completion)``
    pair, or the completion count alone.

    Raises :class:`InvalidReference` when ``expected`` does not pass the contract on these labels:
    only rows that passed the ``contract`` check can be scored.
    """
    rules = rules or load_rules()
    labels = list(labels)
    reference = _validated_reference(expected, labels, rules)
    prompt_tokens, completion_tokens = _tokens(tokens)
    score = ExampleScore(language=language, labels=labels, expected=[], produced=[], request=request, reply=reply,
                         latency_s=latency_s, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    expected_canon = canonical_program(reference, rules)
    score.expected = [c.to_wire() for c in expected_canon]
    score.refusal_expected = not expected_canon
    misses: list[tuple[str, str | None, str]] = []

    items = _items(reply, produced)
    if items is None:
        score.fn = len(expected_canon)
        for c in expected_canon:
            _tally(score.per_command, c.command, fn=1)
            score.confusion.append([c.command, NONE])
        misses.append(("unparsable", None, "The reply holds no JSON array of commands."))
        return _finish(score, misses)

    score.parsed = True
    score.items = len(items)
    score.refused = not items
    valid: list[Command] = []
    for index, item in enumerate(items):
        outcome = validate_item(item, labels, rules)
        if isinstance(outcome, Command):
            valid.append(outcome)
            continue
        kind = _rejection_kind(item, labels, rules)
        name = item.get("command") if isinstance(item, dict) and isinstance(item.get("command"), str) else None
        misses.append((kind, name, f"Item {index + 1}: {outcome}"))
        score.fp += 1
        if name in rules.commands:
            _tally(score.per_command, name, fp=1)
    score.valid_items = len(valid)
    kinds = {kind for kind, _, _ in misses}
    score.schema_valid = not kinds & {"unknown_command", "bad_paras"}
    score.label_valid = "wrong_label" not in kinds
    score.valid = not kinds
    produced_canon = canonical_program(valid, rules)
    score.produced = [c.to_wire() for c in produced_canon]
    score.exact_match = score.valid and ([_key(c, rules) for c in expected_canon]
                                         == [_key(c, rules) for c in produced_canon])
    named = {it["command"] for it in items if isinstance(it, dict) and isinstance(it.get("command"), str)}
    score.type_match = {c.command for c in expected_canon} == named

    _count_pairs(score, expected_canon, produced_canon, rules)
    _match(score, expected_canon, produced_canon, misses, rules)
    if score.refusal_expected and items:
        misses = [m for m in misses if m[0] != "extra_command"]
        misses.append(("missed_refusal", None, "The request cannot be done on this image, and commands were given."))
    return _finish(score, misses)


def score_row(row: DatasetRow, reply: str | None, produced: Sequence[Any] | None, *, latency_s: float | None = None,
              tokens: Mapping[str, int | None] | tuple[int | None, int | None] | int | None = None,
              rules: Rules | None = None) -> ExampleScore:
    """:func:`score_example` for a :class:`finetune.dataset_rows.DatasetRow` (its commands, labels, language)."""
    return score_example([dict(c) for c in row.commands], reply, produced, labels=row.labels, language=row.language,
                         latency_s=latency_s, tokens=tokens, rules=rules, request=row.request)


def produced_items(result: Any) -> list[dict[str, Any]]:
    """A ``PlanResult``'s items as the planner wrote them: its valid commands and its rejected items, in order.

    ``PlanResult.wire()`` holds only the commands that passed, which hides the planner's invalid items
    from the metrics; this puts the rejected ones back at their index.
    """
    rejected = sorted(result.rejections, key=lambda r: r.index)
    items: list[Any] = [c.to_wire() for c in result.commands]
    for rejection in rejected:
        items.insert(min(rejection.index, len(items)), rejection.item)
    return items


def _validated_reference(expected: Sequence[Mapping[str, Any]], labels: Collection[str], rules: Rules) -> list[Command]:
    commands = []
    for index, item in enumerate(expected):
        outcome = validate_item(dict(item) if isinstance(item, Mapping) else item, labels, rules)
        if not isinstance(outcome, Command):
            raise InvalidReference(f"Expected command {index + 1} does not pass the contract: {outcome}")
        commands.append(outcome)
    return commands


def _tokens(tokens: Any) -> tuple[int | None, int | None]:
    if tokens is None:
        return None, None
    if isinstance(tokens, Mapping):
        return tokens.get("prompt"), tokens.get("completion")
    if isinstance(tokens, tuple | list):
        prompt, completion = tokens
        return prompt, completion
    return None, int(tokens)


def _items(reply: str | None, produced: Sequence[Any] | None) -> list[Any] | None:
    if produced is not None:
        return [c.to_wire() if isinstance(c, Command) else (dict(c) if isinstance(c, Mapping) else c)
                for c in produced]
    if reply is None:
        return None
    try:
        return extract_commands(reply)
    except CommandsNotFound:
        return None


def _rejection_kind(item: Any, labels: Collection[str], rules: Rules) -> str:
    """Which error an invalid item is: it validates once every label it names exists → ``wrong_label``."""
    if not isinstance(item, dict) or item.get("command") not in rules.commands:
        return "unknown_command"
    rule = rules.commands[item["command"]]
    loose = {*labels, *rules.default_labels, rules.selection_label, *rule.requires_labels}
    paras = item.get("paras")
    index = rule.targets_index
    if index is not None and isinstance(paras, list) and len(paras) > index and isinstance(paras[index], list):
        loose.update(t for t in paras[index] if isinstance(t, str))
    return "wrong_label" if isinstance(validate_item(item, loose, rules), Command) else "bad_paras"


def _tally(table: dict[str, list[int]], name: str, *, tp: int = 0, fp: int = 0, fn: int = 0) -> None:
    row = table.setdefault(name, [0, 0, 0])
    row[0] += tp
    row[1] += fp
    row[2] += fn


def _count_pairs(score: ExampleScore, expected: list[Command], produced: list[Command], rules: Rules) -> None:
    want = Counter(_pair(c, rules) for c in expected)
    got = Counter(_pair(c, rules) for c in produced)
    for pair in want | got:
        tp = min(want[pair], got[pair])
        _tally(score.per_command, pair[0], tp=tp, fp=got[pair] - tp, fn=want[pair] - tp)
        score.tp += tp
        score.fp += got[pair] - tp
        score.fn += want[pair] - tp


def _match(score: ExampleScore, expected: list[Command], produced: list[Command],
           misses: list[tuple[str, str | None, str]], rules: Rules) -> None:
    candidates = []
    for i, e in enumerate(expected):
        for j, p in enumerate(produced):
            same = e.command == p.command
            overlap = _jaccard(_implicit_targets(e, rules), _implicit_targets(p, rules))
            if same or overlap > 0:
                agree = same and _paras_agree(e, p, rules)
                candidates.append((-int(same), -overlap, -int(agree), i, j))
    used_e: set[int] = set()
    used_p: set[int] = set()
    for _, _, _, i, j in sorted(candidates):
        if i in used_e or j in used_p:
            continue
        used_e.add(i)
        used_p.add(j)
        e, p = expected[i], produced[j]
        score.confusion.append([e.command, p.command])
        if e.command != p.command:
            misses.append(("wrong_command", e.command, f"Expected {e.command}, got {p.command} on overlapping parts."))
            continue
        score.target_pairs += 1
        if set(e.targets(rules)) == set(p.targets(rules)):
            score.target_correct += 1
        else:
            misses.append(("wrong_target", e.command, f"{e.command} on {sorted(p.targets(rules))}, expected on "
                                                      f"{sorted(e.targets(rules))}."))
        rule = rules.commands[e.command]
        compared = [(k, para) for k, para in enumerate(rule.paras) if para.type != "targets"]
        if not compared:
            continue
        score.para_pairs += 1
        ok = True
        for k, para in compared:
            agree = para_matches(para, e.paras[k], p.paras[k])
            cell = score.para_kinds.setdefault(para.type, [0, 0])
            cell[0] += int(agree)
            cell[1] += 1
            if not agree:
                ok = False
                misses.append(("wrong_para", e.command, f"{e.command} {para.name} {p.paras[k]!r}, expected "
                                                        f"{e.paras[k]!r}."))
        score.para_correct += int(ok)
    for i, e in enumerate(expected):
        if i not in used_e:
            score.confusion.append([e.command, NONE])
            misses.append(("missing_command", e.command, f"No {e.command} on {sorted(e.targets(rules))} was given."
                           if e.targets(rules) else f"No {e.command} was given."))
    for j, p in enumerate(produced):
        if j not in used_p:
            score.confusion.append([NONE, p.command])
            shown = json.dumps(p.to_wire()["paras"], ensure_ascii=False)
            misses.append(("extra_command", p.command, f"{p.command} {shown} was not expected."))


def _finish(score: ExampleScore, misses: list[tuple[str, str | None, str]]) -> ExampleScore:
    if score.parsed:
        score.precision, score.recall, score.f1 = _prf(score.tp, score.fp, score.fn)
    kinds = {kind for kind, _, _ in misses}
    score.errors = [kind for kind in ERROR_TYPES if kind in kinds]
    score.primary_error = score.errors[0] if score.errors else None
    score.misses = [{"type": kind, "command": name, "detail": detail} for kind, name, detail in misses]
    return score


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; an empty side is perfect when the other is empty too (a correct refusal)."""
    precision = tp / (tp + fp) if tp + fp else (1.0 if not fn else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if not fp else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# -- canonical programs ------------------------------------------------------------------------


def canonical_program(commands: Sequence[Command], rules: Rules | None = None) -> list[Command]:
    """Merged, same-effect commands unioned over their targets, targets sorted, ordered (see the module docstring)."""
    rules = rules or load_rules()
    unioned: list[Command] = []
    slot: dict[tuple[Any, ...], int] = {}
    for command in merge(commands, rules):
        rule = rules.commands[command.command]
        index = rule.targets_index
        if index is None or not command.paras[index] or rule.combine == "always":
            unioned.append(command)
            continue
        key = (command.command, *(_norm(para, v) for para, v in zip(rule.paras, command.paras, strict=True)
                                  if para.type != "targets"))
        if key in slot:
            first = unioned[slot[key]]
            paras = list(first.paras)
            paras[index] = tuple(dict.fromkeys([*first.paras[index], *command.paras[index]]))
            unioned[slot[key]] = Command(first.command, tuple(paras))
            continue
        slot[key] = len(unioned)
        unioned.append(command)
    tidy = []
    for command in unioned:
        rule = rules.commands[command.command]
        paras = tuple(tuple(sorted(v)) if para.type == "targets" else v for para, v in zip(rule.paras, command.paras,
                                                                                               strict=True))
        tidy.append(Command(command.command, paras))
    return sorted(tidy, key=lambda c: (-rules.commands[c.command].priority, c.command, repr(_key(c, rules)[1:])))


def _norm(para: ParaRule, value: Any) -> Any:
    if para.type == "targets":
        return tuple(sorted(value))
    if para.type == "color":
        return parse_color(value)
    if para.type == "number":
        return round(float(value), 6)
    if para.type == "text":
        return _norm_text(value)
    return value


def _norm_text(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _key(command: Command, rules: Rules | None = None) -> tuple[Any, ...]:
    """What exact match compares: the name and every para normalized."""
    rule = (rules or load_rules()).commands[command.command]
    return (command.command, *(_norm(para, v) for para, v in zip(rule.paras, command.paras, strict=True)))


def _pair(command: Command, rules: Rules) -> tuple[str, frozenset[str]]:
    return command.command, frozenset(command.targets(rules))


def _implicit_targets(command: Command, rules: Rules) -> frozenset[str]:
    """The parts a command acts on, for matching: its targets, Face for ``face``, the image for global edits."""
    rule: CommandRule = rules.commands[command.command]
    targets = frozenset(command.targets(rules))
    if targets:
        return targets
    if rule.requires_labels:
        return frozenset(rule.requires_labels)
    return frozenset() if not rule.executable else frozenset({"<image>"})


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _paras_agree(expected: Command, produced: Command, rules: Rules) -> bool:
    rule = rules.commands[expected.command]
    return all(para_matches(para, a, b) for para, a, b in zip(rule.paras, expected.paras, produced.paras, strict=True)
               if para.type != "targets")


# -- tolerances --------------------------------------------------------------------------------


def para_matches(para: ParaRule, expected: Any, produced: Any) -> bool:
    """Whether a produced para is close enough to the expected one, by the para's type.

    Colours by hue and lightness (:func:`colors_match`), numbers by sign and size
    (:func:`amounts_match`), texts by key words (:func:`prompts_match`), enums and targets exactly.
    """
    if para.type == "color":
        return colors_match(expected, produced)
    if para.type == "number":
        return amounts_match(expected, produced)
    if para.type == "text":
        return prompts_match(expected, produced)
    if para.type == "targets":
        return set(expected) == set(produced)
    return expected == produced


def _hls(color: str) -> tuple[float, float, float]:
    r, g, b = parse_color(color)
    return colorsys.rgb_to_hls(r / 255, g / 255, b / 255)


def _achromatic(lightness: float, saturation: float) -> bool:
    low, high = ACHROMATIC_LIGHTNESS
    return saturation < ACHROMATIC_SATURATION or lightness < low or lightness > high


def colors_match(expected: str, produced: str) -> bool:
    """Same colour family: hues within HUE_TOLERANCE_DEG and lightness within LIGHTNESS_TOLERANCE.

    Greys, black, white and silver have no meaningful hue: they agree only with each other, by lightness.
    ``red`` ~ ``红`` (crimson) ~ ``#e00000``; ``red`` ≁ ``orange`` (hue 39°), ≁ ``pink`` (lighter);
    ``white`` ~ ``silver``.
    """
    try:
        h1, l1, s1 = _hls(expected)
        h2, l2, s2 = _hls(produced)
    except InvalidColor:
        return False
    if abs(l1 - l2) > LIGHTNESS_TOLERANCE + 1e-9:
        return False
    grey1, grey2 = _achromatic(l1, s1), _achromatic(l2, s2)
    if grey1 or grey2:
        return grey1 and grey2
    distance = abs(h1 - h2) * 360
    return min(distance, 360 - distance) <= HUE_TOLERANCE_DEG + 1e-9


def amounts_match(expected: float, produced: float) -> bool:
    """Same sign (zero only with zero), and within AMOUNT_ABS_TOLERANCE or a factor of AMOUNT_FACTOR."""
    if math.copysign(1, expected) != math.copysign(1, produced) or (expected == 0) != (produced == 0):
        return expected == produced
    if abs(expected - produced) <= AMOUNT_ABS_TOLERANCE + 1e-9:
        return True
    small, large = sorted((abs(expected), abs(produced)))
    return large <= AMOUNT_FACTOR * small + 1e-9


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def key_words(text: str) -> frozenset[str]:
    """A prompt's content words: lower case, stop words out, plurals folded; Chinese by character, function
    characters (的, 把, 色, 子 …) out, so 红色裙子 and 红裙 share their key words."""
    text = unicodedata.normalize("NFKC", text).casefold()
    words = set()
    for token in _TOKEN.findall(text):
        if _CJK.fullmatch(token):
            if token not in _ZH_STOPCHARS:
                words.add(token)
        elif token not in _EN_STOPWORDS and (len(token) > 1 or token.isdigit()):
            words.add(_stem(token))
    return frozenset(words)


def prompts_match(expected: str, produced: str) -> bool:
    """The produced text holds at least PROMPT_KEYWORD_SHARE of the expected text's key words.

    A prompt in the other language shares no key words and does not match (the contract's prompts
    are what the generator reads, and the seed data writes them in English).
    """
    want = key_words(expected)
    if not want:
        return _norm_text(expected) == _norm_text(produced)
    return len(want & key_words(produced)) / len(want) >= PROMPT_KEYWORD_SHARE - 1e-9


# -- aggregation -------------------------------------------------------------------------------


@dataclass
class EvalMetrics:
    """Aggregated metrics of a run. ``scalars`` holds METRIC_NAMES (None where nothing was there to measure)."""

    scalars: dict[str, float | int | None]
    per_command: dict[str, dict[str, float | int | None]]
    per_language: dict[str, dict[str, float | int | None]]
    #: expected type → produced type → pairs; NONE on either side for missing / extra commands.
    confusion: dict[str, dict[str, int]]
    #: error type → examples with it (every type present, zeros included).
    errors: dict[str, int]
    #: error type → examples whose primary error it is.
    primary_errors: dict[str, int]
    #: para kind → {"correct", "compared", "accuracy"}.
    parameter_kinds: dict[str, dict[str, float | int | None]]

    def __getitem__(self, name: str) -> float | int | None:
        return self.scalars[name]

    def to_dict(self) -> dict[str, Any]:
        return {"scalars": dict(self.scalars), "per_command": self.per_command, "per_language": self.per_language,
                "confusion": self.confusion, "errors": self.errors, "primary_errors": self.primary_errors,
                "parameter_kinds": self.parameter_kinds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalMetrics:
        return cls(**{k: data[k] for k in ("scalars", "per_command", "per_language", "confusion", "errors",
                                           "primary_errors", "parameter_kinds")})


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _share(flags: Iterable[bool]) -> float | None:
    values = list(flags)
    return sum(values) / len(values) if values else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _scalars(scores: Sequence[ExampleScore]) -> dict[str, float | int | None]:
    n = len(scores)
    tp, fp, fn = (sum(getattr(s, k) for s in scores) for k in ("tp", "fp", "fn"))
    precision, recall, f1 = _prf(tp, fp, fn)
    per_command = _per_command(scores)
    macro = [row["f1"] for row in per_command.values() if row["f1"] is not None]
    latencies = [s.latency_s for s in scores if s.latency_s is not None]
    prompt = [s.prompt_tokens for s in scores if s.prompt_tokens is not None]
    completion = [s.completion_tokens for s in scores if s.completion_tokens is not None]
    items = sum(s.items for s in scores)
    expecting = [s for s in scores if not s.refusal_expected]
    return {
        "examples": n,
        "parse_rate": _share(s.parsed for s in scores),
        "schema_validity": _share(s.schema_valid for s in scores),
        "label_validity": _share(s.label_valid for s in scores),
        "validity": _share(s.valid for s in scores),
        "valid_command_share": _ratio(sum(s.valid_items for s in scores), items),
        "exact_match": _share(s.exact_match for s in scores),
        "precision_micro": precision if n else None,
        "recall_micro": recall if n else None,
        "f1_micro": f1 if n else None,
        "f1_macro": sum(macro) / len(macro) if macro else None,
        "f1_example": _share(s.f1 for s in scores) if n else None,
        "command_type_accuracy": _share(s.type_match for s in scores),
        "target_accuracy": _ratio(sum(s.target_correct for s in scores), sum(s.target_pairs for s in scores)),
        "parameter_accuracy": _ratio(sum(s.para_correct for s in scores), sum(s.para_pairs for s in scores)),
        "refusal_accuracy": _share(bool(s.correct_refusal) for s in scores if s.refusal_expected),
        "false_refusal_rate": _share(s.parsed and s.refused for s in expecting),
        "error_rate": _share(bool(s.errors) for s in scores),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_mean_s": sum(latencies) / len(latencies) if latencies else None,
        "prompt_tokens_total": sum(prompt) if prompt else None,
        "completion_tokens_total": sum(completion) if completion else None,
        "prompt_tokens_mean": sum(prompt) / len(prompt) if prompt else None,
        "completion_tokens_mean": sum(completion) / len(completion) if completion else None,
    }


def _per_command(scores: Sequence[ExampleScore]) -> dict[str, dict[str, float | int | None]]:
    totals: dict[str, list[int]] = {}
    for s in scores:
        for name, (tp, fp, fn) in s.per_command.items():
            _tally(totals, name, tp=tp, fp=fp, fn=fn)
    table: dict[str, dict[str, float | int | None]] = {}
    for name in sorted(totals, key=lambda c: (list(load_rules().commands).index(c) if c in load_rules().commands
                                               else 99, c)):
        tp, fp, fn = totals[name]
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, tp + fn)
        f1 = (None if precision is None and recall is None else
              2 * precision * recall / (precision + recall) if precision and recall else 0.0)
        table[name] = {"support": tp + fn, "produced": tp + fp, "tp": tp, "fp": fp, "fn": fn,
                       "precision": precision, "recall": recall, "f1": f1}
    return table


def aggregate(scores: Sequence[ExampleScore]) -> EvalMetrics:
    """The run's metrics from its examples' scores (stored scores read back by ExampleScore.from_dict give the same)."""
    scores = list(scores)
    languages = sorted({s.language for s in scores})
    per_language = {lang: {k: v for k, v in _scalars([s for s in scores if s.language == lang]).items()
                           if k in LANGUAGE_METRICS} for lang in languages}
    confusion: dict[str, dict[str, int]] = {}
    for s in scores:
        for want, got in s.confusion:
            row = confusion.setdefault(want, {})
            row[got] = row.get(got, 0) + 1
    kinds: dict[str, list[int]] = {}
    for s in scores:
        for kind, (ok, total) in s.para_kinds.items():
            cell = kinds.setdefault(kind, [0, 0])
            cell[0] += ok
            cell[1] += total
    return EvalMetrics(
        scalars=_scalars(scores),
        per_command=_per_command(scores),
        per_language=per_language,
        confusion={want: dict(sorted(row.items())) for want, row in sorted(confusion.items())},
        errors={kind: sum(kind in s.errors for s in scores) for kind in ERROR_TYPES},
        primary_errors={kind: sum(s.primary_error == kind for s in scores) for kind in ERROR_TYPES},
        parameter_kinds={kind: {"correct": ok, "compared": total, "accuracy": _ratio(ok, total)}
                         for kind, (ok, total) in sorted(kinds.items())},
    )


def metrics_table(metrics: EvalMetrics | Mapping[str, Any]) -> list[tuple[str, float | int | None]]:
    """(metric name, value) in METRIC_NAMES order: what the CLI prints and the page's summary lists.

    Accepts :class:`EvalMetrics` or its ``to_dict()`` (a stored run's metrics column).
    """
    scalars = metrics.scalars if isinstance(metrics, EvalMetrics) else metrics.get("scalars", {})
    return [(name, scalars.get(name)) for name in METRIC_NAMES]


#: The metrics that are shares (0..1): shown as percentages by the CLI and the Evaluation page alike.
RATE_METRICS: tuple[str, ...] = tuple(n for n in METRIC_NAMES if n != "examples" and not n.startswith(
    ("latency", "prompt_tokens", "completion_tokens")))


def format_metric(name: str, value: Any) -> str:
    """A metric as people read it, the same on the page and in the CLI: shares as %, seconds to ms, counts whole."""
    if value is None:
        return "–"
    if name in RATE_METRICS:
        return f"{float(value):.1%}"
    if name.startswith("latency"):
        return f"{float(value):.3f}"
    if name.endswith("_mean"):
        return f"{float(value):.1f}"
    return f"{int(value):,}"
