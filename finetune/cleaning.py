"""Cleaning a dataset before training: near-duplicate removal, a balance report, leak-free stratified splits.

Two rows whose requests normalize to the same text (:func:`finetune.dataset_rows.normalize_request`:
case, full-width forms, punctuation and spacing aside) teach the same thing; keeping both
over-weights it, and putting them in different splits makes the test score a memory test. So
:func:`dedupe` keeps the first of each, and :func:`split_rows` assigns whole groups of equal
requests to one split, stratified by (first command type, language) so that every split sees
every kind of request in the same proportion.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from finetune.dataset_rows import SPLITS, DatasetRow

#: Request length buckets in characters: a bucket is named by its lower bound ("0-19", …, "320+").
LENGTH_EDGES = (0, 20, 40, 80, 160, 320)
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def dedupe(rows: Iterable[DatasetRow]) -> tuple[list[DatasetRow], list[DatasetRow]]:
    """(kept, removed): the first row of each normalized request is kept, later ones removed; one pass, O(n)."""
    seen: set[str] = set()
    kept: list[DatasetRow] = []
    removed: list[DatasetRow] = []
    for row in rows:
        key = row.key
        if key in seen:
            removed.append(row)
        else:
            seen.add(key)
            kept.append(row)
    return kept, removed


def _length_bucket(length: int) -> str:
    i = bisect_right(LENGTH_EDGES, length) - 1
    if i == len(LENGTH_EDGES) - 1:
        return f"{LENGTH_EDGES[-1]}+"
    return f"{LENGTH_EDGES[i]}-{LENGTH_EDGES[i + 1] - 1}"


@dataclass
class BalanceReport:
    """What a dataset holds, for the balance charts: counts per kind of row."""

    rows: int = 0
    #: Command occurrences per command type (a row with two `change` commands counts two).
    commands: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    #: Rows whose image has the label.
    labels: Counter[str] = field(default_factory=Counter)
    #: Rows whose commands target the label (what the model learns to name).
    targets: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    #: Rows per request length bucket in characters, in bucket order.
    lengths: Counter[str] = field(default_factory=Counter)
    #: Rows per number of commands.
    command_counts: Counter[int] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; count tables are sorted by count (most first), lengths and command counts by their order."""
        def top(counter: Counter[str]) -> dict[str, int]:
            return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))

        buckets = [_length_bucket(edge) for edge in LENGTH_EDGES]
        return {"rows": self.rows, "commands": top(self.commands), "languages": top(self.languages),
                "labels": top(self.labels), "targets": top(self.targets), "sources": top(self.sources),
                "lengths": {b: self.lengths[b] for b in buckets if self.lengths[b]},
                "command_counts": {str(n): self.command_counts[n] for n in sorted(self.command_counts)},
                "splits": top(self.splits)}


def _targets(command: Any) -> list[str]:
    """Labels in a wire command's list paras (every command's targets are its only list para)."""
    paras = command.get("paras") if isinstance(command, dict) else None
    return [t for p in paras or () if isinstance(p, list) for t in p if isinstance(t, str)]


def balance_report(rows: Iterable[DatasetRow]) -> BalanceReport:
    report = BalanceReport()
    for row in rows:
        report.rows += 1
        report.commands.update(row.command_types)
        report.languages[row.language] += 1
        report.labels.update(set(row.labels))
        report.targets.update({t for c in row.commands for t in _targets(c)})
        report.sources[row.source] += 1
        report.lengths[_length_bucket(len(row.request))] += 1
        report.command_counts[len(row.commands)] += 1
        if row.split:
            report.splits[row.split] += 1
    return report


def stratum(row: DatasetRow) -> tuple[str, str]:
    """What a split is stratified by: the first command's type ("none" without one) and the language."""
    types = row.command_types
    return (types[0] if types else "none", row.language)


def split_rows(rows: Sequence[DatasetRow], *, seed: int,
               fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[DatasetRow]:
    """The rows, in their order, with ``split`` set to train/val/test.

    Rows with the same normalized request form a group and go to one split together (no leak);
    a group's stratum is its first row's. Within each stratum the groups are shuffled by
    ``seed`` and dealt, one at a time, to the split furthest behind its share of the rows so
    far, so every stratum is split in the given fractions (to within one group).
    """
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"Split fractions are three non-negative shares of train, val and test that add up to 1; "
                         f"got {list(fractions)!r}.")
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row.key, []).append(i)
    by_stratum: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, members in groups.items():
        by_stratum[stratum(rows[members[0]])].append(key)
    assigned: dict[str, str] = {}
    for name in sorted(by_stratum):
        keys = sorted(by_stratum[name])
        random.Random(f"{seed}:{name[0]}:{name[1]}").shuffle(keys)
        counts = [0] * len(SPLITS)
        total = 0
        for key in keys:
            size = len(groups[key])
            total += size
            # The split whose count is furthest below its share once this group is counted in the total.
            pick = max(range(len(SPLITS)), key=lambda s: (fractions[s] * total - counts[s], -s))
            counts[pick] += size
            assigned[key] = SPLITS[pick]
    return [replace(row, split=assigned[row.key]) for row in rows]


def leaks(rows: Iterable[DatasetRow]) -> list[str]:
    """Normalized requests that occur in more than one split (should be none), sorted."""
    where: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.split is not None:
            where[row.key].add(row.split)
    return sorted(key for key, splits in where.items() if len(splits) > 1)
