"""Tokens/s of the local planner with and without grammar-constrained decoding, and the overhead ratio.

Both runs write the same number of tokens from the same prompts in the same process:
the constrained run ends when every row has written its end token, and the unconstrained
run then writes exactly as many tokens per row (its end token one the model cannot write).
They differ in what a token costs: unconstrained, every token is a forward pass; under
the grammar, forced tokens are appended without one (``core/planners/decoding.py``),
and every chosen token pays for llguidance's mask. The benchmark prints both effects:
tokens/s (what a person waits for) and the cost per forward pass (what the mask costs).
A third run, transformers' own ``generate`` on the same unconstrained work, shows the
planner's decode loop is not a slower baseline than the library's.

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


def _constrained(planner, prompts) -> tuple[float, int, int]:
    """Seconds, tokens per row (the longest row's, its end token included) and forward passes."""
    start = time.perf_counter()
    answers = planner.generate(prompts, LABELS, do_sample=True)
    elapsed = time.perf_counter() - start
    return elapsed, max(a.tokens + (not a.truncated) for a in answers), answers[0].forwards


def _unconstrained(planner, prompts, tokens: int) -> float:
    start = time.perf_counter()
    planner.generate(prompts, LABELS, constrained=False, do_sample=True, max_new_tokens=tokens, stop_at_eos=False)
    return time.perf_counter() - start


def _prefill(planner, prompts) -> float:
    """One forward pass over the prompts: the part of every run that writes no answer token but the first."""
    return _unconstrained(planner, prompts, 1)


def _library(planner, prompts, tokens: int) -> float:
    """The same unconstrained work through transformers' generate (one forward pass per token, no processor)."""
    import torch

    inputs = planner.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    with torch.inference_mode():
        planner.model.generate(**inputs, max_new_tokens=tokens, do_sample=True, top_k=0, top_p=1.0,
                               eos_token_id=planner._n_vocab, pad_token_id=planner.tokenizer.pad_token_id)
    return time.perf_counter() - start


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

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
    _constrained(planner, prompts[:1])  # warm-up
    _unconstrained(planner, prompts[:1], 8)
    _library(planner, prompts[:1], 8)
    print(f"load average before: {_load()}")
    for batch in args.batch:
        on_time = off_time = library_time = prefill_time = 0.0
        tokens = forwards = steps = passes_on = 0
        for i in range(0, len(prompts), batch):
            chunk = prompts[i:i + batch]
            on_runs, off_runs, library_runs, prefill_runs = [], [], [], []
            for _ in range(args.repeats):  # interleaved, best of: other processes share this machine
                torch.manual_seed(i)
                elapsed, length, passes = _constrained(planner, chunk)
                on_runs.append(elapsed)
                off_runs.append(_unconstrained(planner, chunk, length))
                library_runs.append(_library(planner, chunk, length))
                prefill_runs.append(_prefill(planner, chunk))
            on_time, off_time, library_time = on_time + min(on_runs), off_time + min(off_runs), \
                library_time + min(library_runs)
            prefill_time += min(prefill_runs)
            tokens += length * len(chunk)
            forwards += passes * len(chunk)
            steps, passes_on = steps + length - 1, passes_on + passes - 1
        on, off = tokens / on_time, tokens / off_time
        # after the prompt's pass, which both runs make and which dominates at 0.5B sizes on a CPU
        per_pass = ((on_time - prefill_time) / max(passes_on, 1)) / ((off_time - prefill_time) / steps)
        print(f"batch {batch:2d}: {tokens} tokens; unconstrained {off:8.1f} tok/s (transformers' generate "
              f"{tokens / library_time:8.1f}), constrained {on:8.1f} tok/s in {forwards / tokens:.2f} forward passes "
              f"per token; overhead {(off / on - 1) * 100:+.1f}% (target <= 10%), "
              f"per forward pass after the prompt's {(per_pass - 1) * 100:+.1f}%")
    print(f"load average after: {_load()}")
    if not torch.cuda.is_available():
        print("no GPU here: the Qwen2.5-0.5B-size GPU run is not possible on this machine")


if __name__ == "__main__":
    main()
