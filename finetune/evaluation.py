"""Planner evaluation on the thesis dataset format: validity, target-set F1 and command-type accuracy.

The dataset is LLaMA-Factory alpaca JSON: ``instruction`` is the request, ``output``
the reference command array as text, and ``history`` a first turn whose answer lists
the labels of the image ("1. Background\\n2. Hair …"). Metrics:

- validity rate (the thesis metric): the share of samples whose reply yields at least
  one command and only commands that validate against the sample's labels;
- target-set F1: per sample, the union of targets over all commands against the
  reference's union; reported per sample (mean) and pooled (micro);
- command-type accuracy: the share of samples whose set of command names equals the
  reference's.

Samples whose reference does not parse cannot be scored for F1 or type accuracy; they
are counted and left out of those two (they still count for validity).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.commands import CommandsNotFound, extract_commands, validate
from core.rules import Rules, load_rules

_LABEL_LINE = re.compile(r"^\s*\d+\s*[.、)]\s*(\S.*?)\s*$", re.MULTILINE)


class DatasetError(ValueError):
    """A dataset file that is not in the expected format; the message says where."""


@dataclass(frozen=True)
class Sample:
    index: int
    request: str
    labels: tuple[str, ...]
    reference: str
    #: The reference's commands as items, or None when the reference text does not parse.
    reference_items: list[Any] | None


@dataclass
class SampleScore:
    index: int
    valid: bool
    precision: float | None
    recall: float | None
    f1: float | None
    type_match: bool | None
    predicted_targets: list[str]
    reference_targets: list[str]
    predicted_types: list[str]
    reference_types: list[str]
    reply: str


@dataclass
class EvalReport:
    planner: str
    dataset: str
    samples: int
    scored: int
    reference_unparsable: int
    validity_rate: float
    valid_command_share: float
    target_f1: float
    target_f1_micro: float
    target_precision_micro: float
    target_recall_micro: float
    command_type_accuracy: float
    seconds: float
    worst: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_labels(answer: str) -> tuple[str, ...]:
    """The labels listed in the history's answer ("1. Background\\n2. Hair")."""
    return tuple(match.group(1) for match in _LABEL_LINE.finditer(answer))


def load_dataset(path: Path, *, limit: int | None = None) -> list[Sample]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"There is no dataset file at {path}.") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path} must hold a JSON list of samples with instruction, output and history.")
    samples = []
    for index, row in enumerate(data[:limit] if limit else data):
        if not isinstance(row, dict) or not isinstance(row.get("instruction"), str):
            raise DatasetError(f"Sample {index} of {path} has no instruction text.")
        history = row.get("history") or []
        answer = history[0][1] if history and isinstance(history[0], list) and len(history[0]) > 1 else ""
        reference = str(row.get("output", ""))
        try:
            items: list[Any] | None = extract_commands(reference)
        except CommandsNotFound:
            items = None
        samples.append(Sample(index, row["instruction"], parse_labels(answer), reference, items))
    return samples


def targets_of(items: Iterable[Any], rules: Rules) -> set[str]:
    """The union of target labels over command items (items of unknown shape contribute nothing)."""
    found: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        rule = rules.commands.get(item.get("command"))  # type: ignore[arg-type]
        paras = item.get("paras")
        if rule is None or rule.targets_index is None or not isinstance(paras, list) or len(paras) <= rule.targets_index:
            continue
        value = paras[rule.targets_index]
        if isinstance(value, list):
            found.update(t for t in value if isinstance(t, str))
    return found


def _types(items: Iterable[Any]) -> set[str]:
    return {item["command"] for item in items if isinstance(item, dict) and isinstance(item.get("command"), str)}


def score_sample(sample: Sample, reply_items: list[Any] | None, reply: str, rules: Rules) -> SampleScore:
    items = reply_items or []
    outcome = validate(items, sample.labels, rules)
    valid = bool(items) and not outcome.rejections
    predicted = targets_of(items, rules)
    if sample.reference_items is None:
        return SampleScore(sample.index, valid, None, None, None, None, sorted(predicted), [], sorted(_types(items)),
                           [], reply)
    reference = targets_of(sample.reference_items, rules)
    hits = len(predicted & reference)
    precision = hits / len(predicted) if predicted else (1.0 if not reference else 0.0)
    recall = hits / len(reference) if reference else (1.0 if not predicted else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return SampleScore(sample.index, valid, precision, recall, f1, _types(items) == _types(sample.reference_items),
                       sorted(predicted), sorted(reference), sorted(_types(items)),
                       sorted(_types(sample.reference_items)), reply)


def evaluate(
    plan: Callable[[Sample], tuple[str, list[Any] | None]],
    samples: Sequence[Sample],
    *,
    planner_name: str,
    dataset_name: str,
    rules: Rules | None = None,
    progress: Callable[[int, int], None] | None = None,
    worst: int = 10,
) -> EvalReport:
    """Score ``plan`` (sample → reply text and its command items, None when the reply has none) on the samples."""
    rules = rules or load_rules()
    started = time.perf_counter()
    scores: list[SampleScore] = []
    commands_total = commands_valid = 0
    for i, sample in enumerate(samples):
        reply, items = plan(sample)
        scores.append(score_sample(sample, items, reply, rules))
        outcome = validate(items or [], sample.labels, rules)
        commands_total += len(items or [])
        commands_valid += len(outcome.commands)
        if progress:
            progress(i + 1, len(samples))
    scored = [s for s in scores if s.f1 is not None]
    tp = sum(len(set(s.predicted_targets) & set(s.reference_targets)) for s in scored)
    predicted_n = sum(len(s.predicted_targets) for s in scored)
    reference_n = sum(len(s.reference_targets) for s in scored)
    micro_p = tp / predicted_n if predicted_n else 0.0
    micro_r = tp / reference_n if reference_n else 0.0
    micro_f1 = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0
    n = len(samples) or 1
    lowest = sorted(scored, key=lambda s: (s.f1, s.index))[:worst]
    by_index = {s.index: s for s in samples}
    return EvalReport(
        planner=planner_name,
        dataset=dataset_name,
        samples=len(samples),
        scored=len(scored),
        reference_unparsable=len(scores) - len(scored),
        validity_rate=sum(s.valid for s in scores) / n,
        valid_command_share=commands_valid / commands_total if commands_total else 0.0,
        target_f1=sum(s.f1 or 0.0 for s in scored) / (len(scored) or 1),
        target_f1_micro=micro_f1,
        target_precision_micro=micro_p,
        target_recall_micro=micro_r,
        command_type_accuracy=sum(bool(s.type_match) for s in scored) / (len(scored) or 1),
        seconds=time.perf_counter() - started,
        worst=[{"index": s.index, "request": by_index[s.index].request, "f1": round(s.f1 or 0, 3),
                "predicted": s.predicted_targets, "reference": s.reference_targets} for s in lowest],
    )
