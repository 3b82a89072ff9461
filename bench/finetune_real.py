"""The real run: SmolLM2-135M-Instruct LoRA-tuned on the seed dataset's train split, on this machine.

The same training code as the ``finetune`` job (``finetune.training.train``) on the rows the job
would read from ``chatedit datasets import seed`` (deduplicated, split with seed 0); checkpoints
every ``--checkpoint-every`` steps are kept in ``--out`` as adapters the local planner loads. The loss
curve is printed as it goes and written to ``<out>/steps.json``; before → after quality is measured
with ``bench/planner_quality.py --adapter <out>/adapter-N``.

    .venv/bin/python -m bench.finetune_real --steps 300 --out /tmp/smollm2-lora
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any


def seed_train() -> list[Any]:
    from bench.planner_quality import SEED
    from finetune.cleaning import dedupe, split_rows
    from finetune.dataset_formats import read_rows

    rows, _ = dedupe(read_rows(SEED, "seed").rows)
    return [r for r in split_rows(rows, seed=0) if r.split == "train"]


def main() -> None:
    from finetune.training import ADAPTER_FILES, StepLog, train
    from finetune.training_config import TrainingConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--gradient-accumulation", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/smollm2-lora"))
    parser.add_argument("--model", default=None, help="base model (default: the installed SmolLM2 GGUF)")
    args = parser.parse_args()
    model = args.model
    if model is None:
        from core.planner_install import install_planner
        from core.settings import load_settings

        model = str(install_planner(load_settings().data_dir))
    rows = seed_train()
    config = TrainingConfig(steps=args.steps, batch_size=args.batch_size,
                            gradient_accumulation=args.gradient_accumulation, learning_rate=args.learning_rate,
                            checkpoint_every=args.checkpoint_every)
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs; {len(rows)} train rows; {config.to_dict()}", flush=True)
    steps: list[dict[str, Any]] = []
    args.out.mkdir(parents=True, exist_ok=True)

    def on_step(log: StepLog) -> None:
        steps.append({"step": log.step, "loss": log.loss, "lr": log.learning_rate, "tokens_per_s": log.tokens_per_s,
                      "elapsed_s": round(log.elapsed_s, 1)})
        if log.step % 10 == 0 or log.step == 1:
            print(json.dumps(steps[-1]), flush=True)
            (args.out / "steps.json").write_text(json.dumps(steps))

    def on_checkpoint(step: int, path: Path, loss: float | None) -> None:
        keep = args.out / f"adapter-{step}"  # the trainer keeps only its last two checkpoint folders
        keep.mkdir(exist_ok=True)
        for name in ADAPTER_FILES:
            shutil.copy2(path / name, keep / name)
        print(f"checkpoint {step}: {keep} loss {loss}", flush=True)

    started = time.perf_counter()
    outcome = train(config, rows, base_model=model, output_dir=args.out, on_step=on_step, on_checkpoint=on_checkpoint)
    (args.out / "steps.json").write_text(json.dumps(steps))
    print(json.dumps({"wall_s": round(time.perf_counter() - started, 1), **outcome.details}), flush=True)


if __name__ == "__main__":
    main()
