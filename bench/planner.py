"""Tokens/s of the local planner with and without grammar-constrained decoding, and the overhead ratio.

Both runs make the same number of forward steps from the same prompts in the same process,
so the ratio measures what the grammar costs per step (llguidance consuming tokens and
computing masks, the mask applied to the logits), not how long the answers are: the
constrained run ends when every row has written its end token, and the unconstrained run
then makes exactly as many steps (the end-token step included), its end token checked every
step as usual but one the model cannot write, and no logits processor of its own. (Earlier
measurements used ``min_new_tokens``, which adds one that costs 6-15% of a tiny model's
step, and gave the constrained run one step more: both hid part of the overhead.)

    .venv/bin/python -m bench.planner                 # the tiny test model (hidden 32, vocab 1024)
    .venv/bin/python -m bench.planner --size 0.5b     # Qwen2.5-0.5B sizes, random weights (slow on CPU)

``--size 0.5b`` keeps the 1024-token tokenizer (no hub here) but the model's 151,936-row
head, so the logits and the mask are full size; llguidance's per-token work grows with the
tokenizer's vocabulary, which this run underestimates (see bench/grammar_libraries.py).
The load average is printed before and after: this machine is shared, and CPU timings
move with it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tests.tiny_llm import LABELS, REQUESTS, save_tiny_planner

SIZES = {
    "tiny": {"hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate": 64},
    "0.5b": {"hidden": 896, "layers": 24, "heads": 14, "kv_heads": 2, "intermediate": 4864},
}


def _run(planner, prompts, *, steps: int | None) -> tuple[float, int]:
    """Seconds and forward steps: constrained when ``steps`` is None, else exactly ``steps`` unconstrained."""
    start = time.perf_counter()
    if steps is None:
        answers = planner.generate(prompts, LABELS, do_sample=True)
        elapsed = time.perf_counter() - start
        # a row that ended wrote its end token too: one step more than its tokens
        return elapsed, max(a.tokens + (not a.truncated) for a in answers)
    planner.generate(prompts, LABELS, constrained=False, do_sample=True, max_new_tokens=steps, stop_at_eos=False)
    return time.perf_counter() - start, steps


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from core.planners.local_planner import LocalPlanner

    vocab = 151_936 if args.size == "0.5b" else None
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny_planner(Path(tmp) / "model", **SIZES[args.size])
        if vocab:
            from transformers import AutoModelForCausalLM
            model = AutoModelForCausalLM.from_pretrained(model_dir)
            model.resize_token_embeddings(vocab)
            model.save_pretrained(model_dir)
        planner = LocalPlanner.load(str(model_dir), max_new_tokens=args.max_new_tokens, max_text_chars=48)
    params = sum(p.numel() for p in planner.model.parameters())
    print(f"model: {args.size} ({params / 1e6:.1f} M parameters, head {planner.model.config.vocab_size}), "
          f"tokenizer {len(planner.tokenizer)} tokens, torch threads {torch.get_num_threads()}")

    start = time.perf_counter()
    grammar = planner.grammar(LABELS)
    planner.constraint.compiled(grammar.lark)
    print(f"grammar for {len(LABELS)} labels: built and compiled in {(time.perf_counter() - start) * 1000:.1f} ms "
          f"(the tokenizer view included, once per model)")

    prompts = [planner.prompt(f"{REQUESTS[i % len(REQUESTS)]} (#{i})", LABELS) for i in range(args.prompts)]
    _run(planner, prompts[:1], steps=None)  # warm-up
    _run(planner, prompts[:1], steps=8)
    print(f"load average before: {_load()}")
    for batch in args.batch:
        on_time = off_time = 0.0
        tokens = 0
        for i in range(0, len(prompts), batch):
            on_runs, off_runs = [], []
            for _ in range(args.repeats):  # interleaved, best of: other processes share this machine
                torch.manual_seed(i)
                elapsed, steps = _run(planner, prompts[i:i + batch], steps=None)
                on_runs.append(elapsed)
                off_runs.append(_run(planner, prompts[i:i + batch], steps=steps)[0])
            on_time, off_time = on_time + min(on_runs), off_time + min(off_runs)
            tokens += steps * len(prompts[i:i + batch])
        on, off = tokens / on_time, tokens / off_time
        print(f"batch {batch:2d}: {tokens} tokens; unconstrained {off:8.1f} tok/s, constrained {on:8.1f} tok/s, "
              f"overhead {(off / on - 1) * 100:+.1f}% (target <= 10%)")
    print(f"load average after: {_load()}")
    if not torch.cuda.is_available():
        print("no GPU here: the Qwen2.5-0.5B-size GPU run is not possible on this machine")


if __name__ == "__main__":
    main()
