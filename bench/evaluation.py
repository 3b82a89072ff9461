"""SmolLM2-135M-Instruct (GGUF) as the local planner: examples/s at batch 1 vs 8, constrained vs unconstrained.

The issue's benchmark on a real model and its real 49,152-token tokenizer (the tiny test
model's 1,024 tokens understate llguidance's per-token work). The requests are the first
``--n`` of the seed dataset's test split (deduplicated, split with seed 0 as ``datasets
split`` does), all under the split's most common label set, so a batch shares one grammar as
``plan_many``'s requests on one image do. Three timed runs over the same requests, greedy, in one process:

1. constrained, batch 1 (the baseline): examples/s;
2. constrained, batch 8: examples/s and its ratio to run 1;
3. unconstrained, batch 8, writing exactly as many tokens per batch as run 2 did (its end
   token one the model cannot write): the constrained/unconstrained time ratio.

``--validity N`` also reports zero-shot validity (``core.commands.validate`` against each
request's labels; at least one command) on the first N test requests, constrained vs
unconstrained. The load average is printed: CPU figures move with what else runs.

    .venv/bin/python -m bench.evaluation --n 16
    .venv/bin/python -m bench.evaluation --n 16 --device cuda --validity 50
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SEED = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_chat_dataset.json"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def test_rows(path: Path) -> list[Any]:
    """The seed file's test split, as ``datasets import`` + ``datasets split --seed 0`` make it."""
    from finetune.cleaning import dedupe, split_rows
    from finetune.dataset_formats import read_rows

    rows, _ = dedupe(read_rows(path, "alpaca").rows)
    return [row for row in split_rows(rows, seed=0) if row.split == "test"]


def _timed(planner: Any, prompts: Sequence[str], labels: Sequence[str], batch: int, **options: Any) -> tuple[float, list]:
    start, answers = time.perf_counter(), []
    for i in range(0, len(prompts), batch):
        answers += planner.generate(prompts[i:i + batch], labels, **options)
    return time.perf_counter() - start, answers


def _valid(answer: Any, labels: Sequence[str], rules: Any) -> bool:
    """Valid as the planner reads it: an answer cut by the budget keeps its finished commands (``complete_prefix``)."""
    from core.commands import CommandsNotFound, extract_commands, validate
    from core.planners.constrained import complete_prefix

    text = complete_prefix(answer.text)[0] if answer.truncated else answer.text
    try:
        items = extract_commands(text)
    except CommandsNotFound:
        return False
    outcome = validate(items, labels, rules)
    return bool(outcome.commands) and not outcome.rejections


def validity(planner: Any, rows: Sequence[Any], batch: int) -> dict[str, float]:
    """Share of schema-valid answers, constrained and unconstrained, batched per label set."""
    groups: dict[tuple[str, ...], list[Any]] = {}
    for row in rows:
        groups.setdefault(tuple(row.labels), []).append(row)
    valid = {"constrained": 0, "unconstrained": 0}
    for labels, members in groups.items():
        prompts = [planner.prompt(r.request, labels) for r in members]
        for mode in valid:
            _, answers = _timed(planner, prompts, labels, batch, constrained=mode == "constrained")
            valid[mode] += sum(_valid(a, labels, planner.rules) for a in answers)
    return {mode: count / len(rows) for mode, count in valid.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a .gguf file (default: install SmolLM2 into the test asset cache)")
    parser.add_argument("--dataset", type=Path, default=SEED)
    parser.add_argument("--n", type=int, default=16, help="requests timed (0: no timing)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96,
                        help="keep it above the grammar's closing reserve (68 tokens for the seed labels)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--validity", type=int, default=0, help="also score zero-shot validity on N test requests")
    args = parser.parse_args()

    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported: LocalPlanner.load takes CUDA if it sees one
    import torch

    from core.planner_install import install_planner
    from core.planners.local_planner import LocalPlanner

    if args.model is None:
        from tests.real_assets import cache_dir

        args.model = install_planner(cache_dir(), "smollm2")
    start = time.perf_counter()
    planner = LocalPlanner.load(str(args.model), max_new_tokens=args.max_new_tokens)
    loaded = time.perf_counter() - start
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"device {planner.model.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    print(f"model: {args.model.name}, {sum(p.numel() for p in planner.model.parameters()) / 1e6:.0f} M parameters, "
          f"{planner.model.dtype}, tokenizer {len(planner.tokenizer):,} tokens; loaded in {loaded:.1f} s")

    rows = test_rows(args.dataset)
    if args.n:
        speed(planner, rows, args)
    if args.validity:
        scored = validity(planner, rows[:args.validity], args.batch)
        print(f"zero-shot validity on the first {args.validity} test requests (their own labels): constrained "
              f"{scored['constrained']:.1%}, unconstrained {scored['unconstrained']:.1%}")


def speed(planner: Any, rows: Sequence[Any], args: argparse.Namespace) -> None:
    """The three timed runs of the module docstring, printed as ratios against constrained batch 1."""
    labels = Counter(tuple(r.labels) for r in rows).most_common(1)[0][0]
    chosen = rows[:args.n]  # every request under one label set: speed needs one grammar per batch, not their images
    prompts = [planner.prompt(r.request, labels) for r in chosen]
    lengths = [len(planner.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    print(f"requests: the first {len(chosen)} of the seed test split's {len(rows)}, under its most common label set "
          f"({len(labels)} labels), prompts "
          f"{min(lengths)}–{max(lengths)} tokens; at most {args.max_new_tokens} new tokens")
    _timed(planner, prompts[:1], labels, 1)  # warm-up: grammar compiled, tokenizer view built
    print(f"load average before: {_load()}")

    one, answers_one = _timed(planner, prompts, labels, 1)
    many, answers_many = _timed(planner, prompts, labels, args.batch)
    per_batch = [max(a.tokens + (not a.truncated) for a in answers_many[i:i + args.batch])
                 for i in range(0, len(prompts), args.batch)]
    start = time.perf_counter()
    for i, tokens in zip(range(0, len(prompts), args.batch), per_batch, strict=True):
        planner.generate(prompts[i:i + args.batch], labels, constrained=False, max_new_tokens=tokens, stop_at_eos=False)
    free = time.perf_counter() - start
    print(f"load average after: {_load()}")

    valid_one = sum(_valid(a, labels, planner.rules) for a in answers_one)
    cut = sum(a.truncated for a in answers_one)
    same = sum(a.text == b.text for a, b in zip(answers_one, answers_many, strict=True))
    print(f"constrained, batch 1: {len(prompts) / one:.3f} examples/s ({one:.1f} s; baseline 1.00×); "
          f"{valid_one}/{len(prompts)} valid ({cut} cut by the budget, their finished commands kept); mean {sum(a.tokens for a in answers_one) / len(prompts):.1f} tokens")
    print(f"constrained, batch {args.batch}: {len(prompts) / many:.3f} examples/s ({many:.1f} s; "
          f"{one / many:.2f}× batch 1); {same}/{len(prompts)} answers identical to batch 1's")
    print(f"unconstrained, batch {args.batch}, same tokens per batch ({per_batch}): {len(prompts) / free:.3f} "
          f"examples/s ({free:.1f} s); constrained/unconstrained time {many / free:.2f}×")


if __name__ == "__main__":
    main()
