"""Fine-tuning speed: our ``finetune`` job against TRL's defaults on the same model and rows, and the job's overhead.

Three measurements in one run, on the same base model (default: the installed SmolLM2-135M-Instruct
GGUF) and the same seed train rows as conversational prompt–completion records:

- **TRL defaults**: ``SFTTrainer`` with ``SFTConfig``'s defaults (batch 8, max length 1024, which cuts
  the longest seed prompts), the same LoRA; only output, steps, reports and saving set.
- **ours**: ``finetune.training.build_trainer`` with ``TrainingConfig``'s defaults (batch 1: no padding;
  max length from the data, nothing cut; completion-only loss).
- **our job**: the whole ``finetune`` job through a real worker on a scratch SQLite database (steps stored,
  progress reported, a checkpoint stored as blobs and evaluated on val rows constrained and free). Its
  own costs are read from the run: seconds spent storing steps and progress, storing checkpoints, and
  the evaluations' wall time, each as a share of training time; the evaluation share is also given per
  checkpoint interval of the default ``checkpoint_every`` (50 steps).

Tokens/s counts the tokens the model saw that were not padding (TRL's ``num_tokens``).

    .venv/bin/python -m bench.finetune --steps 4 --eval-rows 4
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any


def _tokens_per_s(trainer: Any, wall: float) -> float:
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    return float(tokens[-1]) / wall if tokens and wall > 0 else float("nan")


def trl_defaults(model_path: str, rows: list[Any], steps: int, out: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from core.planners.local_planner import load_chat_model
    from finetune.training import lora_config, training_records
    from finetune.training_config import TrainingConfig

    tokenizer, model, device = load_chat_model(model_path)
    args = SFTConfig(output_dir=str(out), max_steps=steps, report_to=[], save_strategy="no", logging_steps=1,
                     use_cpu=device == "cpu", disable_tqdm=True, bf16=device == "cuda" and torch.cuda.is_bf16_supported())
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(training_records(rows)),
                         processing_class=tokenizer, peft_config=lora_config(TrainingConfig()))
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    return {"wall_s": wall, "tokens_per_s": _tokens_per_s(trainer, wall), "batch": args.per_device_train_batch_size,
            "max_length": args.max_length}


def ours(model_path: str, rows: list[Any], steps: int, out: Path) -> dict[str, Any]:
    from finetune.training import build_trainer
    from finetune.training_config import TrainingConfig

    config = TrainingConfig(steps=steps, checkpoint_every=10 * steps)
    trainer = build_trainer(config, rows, base_model=model_path, output_dir=out)
    trainer.args.save_strategy = "no"
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    return {"wall_s": wall, "tokens_per_s": _tokens_per_s(trainer, wall), "batch": config.batch_size,
            "max_length": trainer.args.max_length}


def our_job(model_path: str, rows: list[Any], val_rows: list[Any], steps: int, eval_rows: int,
            root: Path) -> dict[str, Any]:
    from dataclasses import replace

    from core.settings import load_settings
    from db.migrate import upgrade
    from finetune.training_config import TrainingConfig
    from jobs.services import Services, datasets, evaluations, training
    from jobs.services.permissions import local_actor
    from jobs.worker import Worker

    services = Services.from_settings(load_settings(data_dir=root, worker_poll_seconds=0.05))
    upgrade(services.database)
    admin = local_actor(services)
    version = datasets.create_version(services, admin, "bench", [replace(r, split="train") for r in rows]
                                      + [replace(r, split="val") for r in val_rows], note="bench", split_seed=0)
    run = training.start_training(services, admin, base_model=model_path, dataset=version.spec,
                                  config={"steps": steps, "checkpoint_every": steps, "eval_limit": eval_rows})
    worker = Worker(services, lanes=["gpu", "batch"])
    worker.start()
    try:
        assert run.job_id is not None
        services.queue.wait(run.job_id, timeout_s=None)
        for job_id in training.evaluation_jobs(services, admin, run.id):
            services.queue.wait(job_id, timeout_s=None)
    finally:
        worker.shutdown()
    done = training.get_training_run(services, admin, run.id)
    curve = training.training_steps(services, admin, run.id)
    evals = [evaluations.run_of_job(services, admin, j) for j in training.evaluation_jobs(services, admin, run.id)]
    eval_s = sum(float(e.timings.get("wall_s", 0)) for e in evals if e is not None)
    services.close()
    wall = float(done.details["wall_s"])
    rates = [s.tokens_per_s for s in curve if s.tokens_per_s]
    per_step = wall / steps
    interval = TrainingConfig().checkpoint_every
    return {"status": done.status, "wall_s": wall, "tokens_per_s": sum(rates) / len(rates) if rates else float("nan"),
            "reporting_share": done.details["reporting_s"] / wall, "checkpoint_share": done.details["checkpointing_s"] / wall,
            "eval_s": eval_s, "eval_share_per_interval": eval_s / (per_step * interval), "eval_examples": eval_rows}


def main() -> None:
    from bench.finetune_real import seed_train
    from bench.planner_quality import seed_test

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--eval-rows", type=int, default=4, help="val rows each checkpoint evaluation answers")
    parser.add_argument("--model", default=None, help="base model (default: the installed SmolLM2 GGUF)")
    args = parser.parse_args()
    model = args.model
    if model is None:
        from core.planner_install import install_planner
        from core.settings import load_settings

        model = str(install_planner(load_settings().data_dir))
    rows = seed_train()[: 8 * args.steps]
    val_rows = seed_test()[: args.eval_rows]
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {Path(model).name}; "
          f"{args.steps} steps", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = trl_defaults(model, rows, args.steps, Path(tmp) / "trl")
        print(f"TRL defaults: batch {base['batch']}, max length {base['max_length']}: "
              f"{base['tokens_per_s']:.0f} tokens/s ({base['wall_s']:.1f} s)", flush=True)
        mine = ours(model, rows, args.steps, Path(tmp) / "ours")
        print(f"ours: batch {mine['batch']}, max length {mine['max_length']}: {mine['tokens_per_s']:.0f} tokens/s "
              f"({mine['wall_s']:.1f} s) = {mine['tokens_per_s'] / base['tokens_per_s']:.2f}x TRL defaults", flush=True)
        job = our_job(model, rows, val_rows, args.steps, args.eval_rows, Path(tmp) / "job")
        print(f"our job ({job['status']}): {job['tokens_per_s']:.0f} tokens/s; storing steps and progress "
              f"{job['reporting_share']:.2%} of training time, storing the checkpoint {job['checkpoint_share']:.2%}; "
              f"evaluating it ({job['eval_examples']} val rows, constrained and free) {job['eval_s']:.1f} s = "
              f"{job['eval_share_per_interval']:.1%} of the training time of one 50-step checkpoint interval",
              flush=True)


if __name__ == "__main__":
    main()
