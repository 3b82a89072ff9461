"""Cleaning: near-duplicates removed (first kept), a balance report, stratified splits that never leak."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from finetune.cleaning import balance_report, dedupe, leaks, split_rows, stratum
from finetune.dataset_rows import DatasetRow
from finetune.templates import generate_template_rows

SEED_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_chat_dataset.json"
if not SEED_FILE.exists():  # pragma: no cover - the layout of /work
    SEED_FILE = Path("/work/shared/data/seed_chat_dataset.json")


@cache
def seed_rows() -> tuple[DatasetRow, ...]:
    """The thesis' seed file as rows (every row, also those that break the contract)."""
    try:
        from finetune.dataset_formats import read_rows
    except ImportError:  # pragma: no cover - only while helper G's importer does not exist
        from finetune.evaluation import load_dataset
        return tuple(DatasetRow(s.request, "zh", s.labels, tuple(s.reference_items or ()), origin=str(s.index))
                     for s in load_dataset(SEED_FILE))
    return tuple(read_rows(SEED_FILE, "seed", keep_invalid=True).rows)


def _row(request: str, command: str = "remove", language: str = "en") -> DatasetRow:
    return DatasetRow(request, language, ("Background", "Hat"), ({"command": command, "paras": [["Hat"]]},))


def test_dedupe_keeps_the_first_of_requests_that_differ_only_in_case_and_punctuation() -> None:
    rows = [_row("Make it RED!"), _row("remove the hat"), _row("make it red"), _row("Ｍａｋｅ ｉｔ ｒｅｄ。"),
            _row("make it blue")]
    kept, removed = dedupe(rows)
    assert [r.request for r in kept] == ["Make it RED!", "remove the hat", "make it blue"]
    assert [r.request for r in removed] == ["make it red", "Ｍａｋｅ ｉｔ ｒｅｄ。"]


def test_dedupe_on_the_seed_file_and_on_template_rows() -> None:
    rows = seed_rows()
    kept, removed = dedupe(rows)
    assert len(kept) + len(removed) == len(rows) == 2_916
    assert len({r.key for r in kept}) == len(kept)
    assert {r.key for r in removed} <= {r.key for r in kept}
    templates = generate_template_rows(3_000, seed=3)
    kept, removed = dedupe(templates + templates[:100])
    assert len(removed) >= 100 and kept[:10] == templates[:10]


def test_balance_report_counts_what_the_charts_show() -> None:
    rows = generate_template_rows(2_000, seed=9) + list(seed_rows())
    report = balance_report(rows).to_dict()
    assert report["rows"] == len(rows)
    assert sum(report["languages"].values()) == len(rows) and set(report["languages"]) == {"en", "zh"}
    assert report["sources"] == dict(Counter(r.source for r in rows).most_common())
    assert sum(report["lengths"].values()) == len(rows)
    assert sum(report["command_counts"].values()) == len(rows)
    assert report["commands"]["change"] == sum(r.command_types.count("change") for r in rows)
    assert report["labels"]["Background"] == len(rows)
    assert report["targets"]["Background"] > 0
    assert list(report["commands"].values()) == sorted(report["commands"].values(), reverse=True)
    json.dumps(report)


def _shares(rows: list[DatasetRow]) -> dict[tuple[str, str], dict[str, float]]:
    by: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in rows:
        by[stratum(row)][row.split] += 1
    return {name: {s: counts[s] / sum(counts.values()) for s in ("train", "val", "test")}
            for name, counts in by.items() if sum(counts.values()) >= 200}


def test_split_is_stratified_by_first_command_and_language() -> None:
    rows = split_rows(generate_template_rows(6_000, seed=4), seed=1)
    shares = _shares(rows)
    assert len(shares) >= 12
    for name, share in shares.items():
        assert share["train"] == pytest.approx(0.8, abs=0.02), name
        assert share["val"] == pytest.approx(0.1, abs=0.02), name
        assert share["test"] == pytest.approx(0.1, abs=0.02), name
    other = split_rows([replace(r, split=None) for r in rows], seed=1, fractions=(0.5, 0.25, 0.25))
    assert Counter(r.split for r in other)["test"] == pytest.approx(1_500, abs=60)


def test_split_is_reproducible_from_the_seed_and_keeps_rows_and_order() -> None:
    rows = generate_template_rows(2_000, seed=8)
    first = split_rows(rows, seed=42)
    assert [r.split for r in first] == [r.split for r in split_rows(rows, seed=42)]
    assert [r.split for r in first] != [r.split for r in split_rows(rows, seed=43)]
    assert [replace(r, split=None) for r in first] == rows


def test_no_request_is_shared_across_splits_even_with_duplicates() -> None:
    rows = list(seed_rows())
    # Template rows repeat short requests on other label sets, and case/punctuation variants are the same request.
    rows += generate_template_rows(3_000, seed=12)
    rows += [replace(r, request=r.request.upper() + "!") for r in rows[:500]]
    assert len({r.key for r in rows}) < len(rows) - 500
    split = split_rows(rows, seed=7)
    assert leaks(split) == []
    assert {r.split for r in split} == {"train", "val", "test"}
    by_key: dict[str, set[str]] = defaultdict(set)
    for row in split:
        by_key[row.key].add(row.split)
    assert all(len(s) == 1 for s in by_key.values())


def test_leaks_names_a_request_in_two_splits() -> None:
    rows = [replace(_row("Remove the hat"), split="train"), replace(_row("remove the hat."), split="test"),
            replace(_row("blur it"), split="val")]
    assert leaks(rows) == ["removethehat"]


def test_bad_fractions_say_why() -> None:
    with pytest.raises(ValueError, match="add up to 1"):
        split_rows([_row("a")], seed=1, fractions=(0.8, 0.3, 0.1))
