"""Planner quality with the evaluation metrics: reference, rules and SmolLM2 (constrained / free), two test sets.

The figures issue 17 asks for in ``docs/benchmarks.md``: every metric of ``finetune.metrics`` for
the reference outputs, the rule planner, and SmolLM2-135M-Instruct zero-shot decoded under the
command grammar and freely, on the seed dataset's test split (deduplicated, split with seed 0 as
``chatedit datasets import`` does) and on the held-out set's test half
(``tests/data/heldout_requests.json``). The rule planner and the reference run on every row; the
model on the first ``--model-n`` rows of each set (CPU time). The model runs as the ``eval_run``
job runs it: one batch per label set, greedy, 512 new tokens at most; ``--adapter DIR`` adds the model
with a LoRA adapter (a fine-tuned checkpoint), before → after in one table.

    .venv/bin/python -m bench.planner_quality --model-n 40
    .venv/bin/python -m bench.planner_quality --model-n 10 --adapter /tmp/smollm2-lora/adapter-300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "data" / "seed_chat_dataset.json"
HELDOUT = ROOT / "tests" / "data" / "heldout_requests.json"
COLUMNS = ("exact_match", "validity", "f1_micro", "command_type_accuracy", "target_accuracy", "parameter_accuracy")


def seed_test() -> list[Any]:
    from finetune.cleaning import dedupe, split_rows
    from finetune.dataset_formats import read_rows

    rows, _ = dedupe(read_rows(SEED, "seed").rows)
    return [r for r in split_rows(rows, seed=0) if r.split == "test"]


def heldout_test() -> list[Any]:
    from finetune.dataset_rows import DatasetRow

    entries = json.loads(HELDOUT.read_text())["entries"]
    return [DatasetRow(request=e["request"], language=e["language"], labels=tuple(e["labels"]),
                       commands=tuple(e["expected"]), source="import", origin=f"heldout#{i}", split="test")
            for i, e in enumerate(entries) if e.get("split") == "test"]


def score(rows: list[Any], answer: Any) -> tuple[dict[str, Any], float]:
    from finetune.metrics import aggregate, score_row

    start = time.perf_counter()
    scores = []
    for batch_start in range(0, len(rows), 8):
        batch = rows[batch_start:batch_start + 8]
        for row, (reply, produced) in zip(batch, answer(batch), strict=True):
            scores.append(score_row(row, reply, produced))
    return aggregate(scores).to_dict()["scalars"], time.perf_counter() - start


def answerers(model_path: str | None, adapters: list[str] | None = None, base: bool = True) -> dict[str, Any]:
    from core.commands import CommandsNotFound, extract_commands
    from core.planners import make_planner
    from finetune.metrics import produced_items

    rules = make_planner("rules")

    def parsed(text: str) -> list[Any] | None:
        try:
            return extract_commands(text)
        except CommandsNotFound:
            return None

    found: dict[str, Any] = {
        "reference": lambda batch: [(json.dumps([dict(c) for c in r.commands]), [dict(c) for c in r.commands])
                                    for r in batch],
        "rules": lambda batch: [(res.reply, produced_items(res)) for res in
                                (rules.plan(r.request, labels=list(r.labels)) for r in batch)],
    }
    if model_path:
        from core.planners.local_planner import LocalPlanner

        def local(planner: Any, constrained: bool) -> Any:
            def run(batch: list[Any]) -> list[tuple[str, list[Any] | None]]:
                out: dict[int, tuple[str, list[Any] | None]] = {}
                groups: dict[tuple[str, ...], list[int]] = {}
                for i, row in enumerate(batch):
                    groups.setdefault(tuple(row.labels), []).append(i)
                for labels, indexes in groups.items():
                    prompts = [planner.prompt(batch[i].request, labels) for i in indexes]
                    for i, g in zip(indexes, planner.generate(prompts, labels, constrained=constrained), strict=True):
                        out[i] = (g.text, parsed(g.text))
                return [out[i] for i in range(len(batch))]
            return run

        if base:
            untuned = LocalPlanner.load(model_path)
            found["SmolLM2 constrained"] = local(untuned, True)
            found["SmolLM2 free"] = local(untuned, False)
        for adapter in adapters or []:
            tuned = LocalPlanner.load(model_path, adapter)
            name = f"SmolLM2+LoRA {Path(adapter).name}"
            found[f"{name} constrained"] = local(tuned, True)
            found[f"{name} free"] = local(tuned, False)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-n", type=int, default=40, help="rows per set the model answers (0: skip the model)")
    parser.add_argument("--adapter", action="append", default=[],
                        help="a LoRA adapter folder of SmolLM2 (bench/finetune_real.py's adapter-N); repeatable")
    parser.add_argument("--no-base", action="store_true", help="skip the untuned model (its figures are known)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference and the rule planner")
    args = parser.parse_args()
    model_path = None
    if args.model_n:
        from core.planner_install import install_planner
        from core.settings import load_settings

        model_path = str(install_planner(load_settings().data_dir))
    sets = {"seed test split": seed_test(), "held-out test half": heldout_test()}
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    header = "| set | planner | rows | " + " | ".join(COLUMNS) + " | s/row |"
    print(header)
    print("|" + "---|" * (len(COLUMNS) + 4))
    planners = answerers(model_path, args.adapter, base=not args.no_base)
    if args.no_reference:
        planners = {k: v for k, v in planners.items() if k.startswith("SmolLM2")}
    for set_name, rows in sets.items():
        for name, answer in planners.items():
            subset = rows[: args.model_n] if name.startswith("SmolLM2") else rows
            metrics, wall = score(subset, answer)
            values = " | ".join("—" if metrics.get(c) is None else f"{metrics[c]:.1%}" for c in COLUMNS)
            print(f"| {set_name} | {name} | {len(subset)} | {values} | {wall / len(subset):.3f} |", flush=True)


if __name__ == "__main__":
    main()
