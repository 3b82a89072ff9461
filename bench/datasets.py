"""Dataset studio benchmark: template rows per second, seed-file import, dedupe and split at 10k and 100k rows.

Usage (from the repository root)::

    .venv/bin/python bench/datasets.py [--sizes 10000,100000] [--repeats 3] [--json PATH]

* Templates: ``finetune.templates.generate_template_rows`` for 5,000 rows (validation and
  merging of every row included), rows per second.
* Import: the thesis' seed file (2,916 rows) read as rows with the import checks, through
  ``finetune.dataset_formats.read_rows`` (``finetune.evaluation.load_dataset`` where that is
  not there).
* Dedupe and split: ``finetune.cleaning.dedupe`` and ``split_rows`` over template rows (which
  repeat short requests, so dedupe has work to do) at each size. Near-linear means the time
  ratio between sizes stays near the size ratio (10× rows → about 10× time).

Templates and import: the median of ``--repeats`` runs; dedupe and split: the best of them (the
ratio is about the algorithm, and on a shared machine the best run is the one least disturbed).
Garbage collection is off while a run is timed. The benchmark only reports; it never fails on a target.
"""

# ruff: noqa: E402

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from finetune.cleaning import dedupe, leaks, split_rows
from finetune.templates import generate_template_rows

SEED_FILE = _HERE.parent.parent / "shared" / "data" / "seed_chat_dataset.json"
TEMPLATE_ROWS = 5_000


def _median_seconds(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The median time of ``repeats`` runs, garbage collection off while timed."""
    times, result = [], None
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - started)
        finally:
            gc.enable()
    return statistics.median(times), result


def _import_seed(path: Path) -> tuple[int, int, str]:
    """(rows kept, rows rejected, which reader) for the seed file."""
    try:
        from finetune.dataset_formats import read_rows
    except ImportError:
        from finetune.evaluation import load_dataset
        samples = load_dataset(path)
        return len(samples), sum(s.reference_items is None for s in samples), "evaluation.load_dataset"
    result = read_rows(path, "seed")
    return len(result.rows), len(result.rejected), "dataset_formats.read_rows"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="row counts for dedupe and split, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed-file", type=Path, default=SEED_FILE)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    results: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python "
                                          f"{platform.python_version()}", "repeats": args.repeats}
    seconds, _ = _median_seconds(lambda: generate_template_rows(TEMPLATE_ROWS, seed=1), args.repeats)
    results["templates"] = {"rows": TEMPLATE_ROWS, "seconds": seconds, "rows_per_second": TEMPLATE_ROWS / seconds}

    seconds, (kept, rejected, reader) = _median_seconds(lambda: _import_seed(args.seed_file), args.repeats)
    results["import_seed"] = {"reader": reader, "rows": kept, "rejected": rejected, "seconds": seconds,
                              "rows_per_second": (kept + rejected) / seconds}

    pool = generate_template_rows(max(sizes), seed=2)
    # The pool's objects go to the permanent generation: otherwise a collection during the 10k run scans
    # all 100k rows, and the smaller size pays for the larger one.
    gc.collect()
    gc.freeze()
    # Sizes are interleaved (10k, 100k, 10k, 100k, …) and the best run of each counts, so a burst of load elsewhere hits both alike.
    dedupe_s: dict[int, list[float]] = {size: [] for size in sizes}
    split_s: dict[int, list[float]] = {size: [] for size in sizes}
    outcome: dict[int, tuple[int, int]] = {}
    for _ in range(args.repeats):
        for size in sizes:
            rows = pool[:size]
            seconds, (_kept, removed) = _median_seconds(lambda rows=rows: dedupe(rows), 1)
            dedupe_s[size].append(seconds)
            seconds, split = _median_seconds(lambda rows=rows: split_rows(rows, seed=3), 1)
            split_s[size].append(seconds)
            outcome[size] = (len(removed), len(leaks(split)))
    results["cleaning"] = [{"rows": size, "dedupe_seconds": min(dedupe_s[size]), "removed": outcome[size][0],
                            "split_seconds": min(split_s[size]), "leaks": outcome[size][1]} for size in sizes]
    first, last = results["cleaning"][0], results["cleaning"][-1]
    results["ratios"] = {"rows": last["rows"] / first["rows"],
                         "dedupe": last["dedupe_seconds"] / first["dedupe_seconds"],
                         "split": last["split_seconds"] / first["split_seconds"]}

    print(f"machine: {results['machine']}; median (templates, import) or best (dedupe, split) of {args.repeats}")
    print("| measure | rows | time | rate |\n|---|---:|---:|---:|")
    t = results["templates"]
    print(f"| template rows | {t['rows']:,} | {t['seconds'] * 1000:,.0f} ms | {t['rows_per_second']:,.0f} rows/s |")
    s = results["import_seed"]
    print(f"| import seed file ({s['reader']}) | {s['rows'] + s['rejected']:,} ({s['rejected']} rejected) | "
          f"{s['seconds'] * 1000:,.0f} ms | {s['rows_per_second']:,.0f} rows/s |")
    for c in results["cleaning"]:
        print(f"| dedupe | {c['rows']:,} ({c['removed']:,} removed) | {c['dedupe_seconds'] * 1000:,.1f} ms | "
              f"{c['rows'] / c['dedupe_seconds']:,.0f} rows/s |")
        print(f"| split | {c['rows']:,} ({c['leaks']} leaks) | {c['split_seconds'] * 1000:,.1f} ms | "
              f"{c['rows'] / c['split_seconds']:,.0f} rows/s |")
    r = results["ratios"]
    print(f"time ratio at {r['rows']:.0f}x rows: dedupe {r['dedupe']:.2f}x, split {r['split']:.2f}x "
          "(near-linear: close to the row ratio)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
