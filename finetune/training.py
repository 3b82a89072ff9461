"""LoRA fine-tuning of a local planner model with TRL's ``SFTTrainer`` (runs in a worker: imports torch).

The training examples are conversational prompt–completion rows made by
:func:`finetune.dataset_formats.row_messages`, which calls the planner's own prompt builder
(:func:`core.planners.messages.build_messages`): TRL renders the prompt with the model's chat
template and ``add_generation_prompt=True``, exactly as :meth:`LocalPlanner.prompt` does at
inference, so a trained model sees at inference the bytes it was trained on. The loss is on the
completion only (the command array and the end-of-turn token).

The caller (the ``finetune`` job) is told about every logged step, every stored checkpoint
directory and is asked at every step whether to stop; it keeps the run's state in the database.
Precision follows the device: fp32 on a CPU, bf16 on CUDA (fp16 where bf16 is missing).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.rules import Rules
from finetune.dataset_formats import row_messages
from finetune.dataset_rows import DatasetRow
from finetune.training_config import TrainingConfig

#: The files of a peft adapter: what a checkpoint's adapter blob holds and a planner loads.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class StepLog:
    """One logged step: what the loss curve and the progress line show."""

    step: int
    loss: float
    learning_rate: float
    tokens_per_s: float | None
    epoch: float | None
    elapsed_s: float


@dataclass(frozen=True)
class TrainingOutcome:
    """How a call to :func:`train` ended: the last step reached, whether it was asked to stop, the measurements."""

    step: int
    stopped: bool
    details: dict[str, Any]


def training_records(rows: Sequence[DatasetRow], rules: Rules | None = None) -> list[dict[str, Any]]:
    """Conversational prompt–completion records (TRL's format) of dataset rows, by the planner's prompt builder."""
    records = []
    for row in rows:
        messages = row_messages(row, rules)
        records.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return records


def lora_config(config: TrainingConfig) -> Any:
    """peft's LoRA on every linear layer but the output head, with the run's rank, alpha and dropout."""
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules="all-linear", bias="none", task_type="CAUSAL_LM")


def sft_config(config: TrainingConfig, output_dir: Path, *, device: str, max_length: int | None) -> Any:
    """TRL's ``SFTConfig`` for a run: no reports, no progress bars, checkpoints every ``checkpoint_every`` steps."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir), max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation, learning_rate=config.learning_rate,
        lr_scheduler_type=config.scheduler, warmup_steps=config.warmup_ratio, logging_steps=config.log_every,
        save_strategy="steps", save_steps=config.checkpoint_every, save_total_limit=2, seed=config.seed,
        data_seed=config.seed, report_to=[], disable_tqdm=True, use_cpu=device == "cpu",
        bf16=device == "cuda" and _bf16(), fp16=device == "cuda" and not _bf16(), max_length=max_length,
        completion_only_loss=True, dataloader_num_workers=0, remove_unused_columns=True, save_only_model=False,
        logging_first_step=True)


def _bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def longest_example(records: Sequence[dict[str, Any]], tokenizer: Any) -> int:
    """Tokens of the longest prompt + completion: the max length that cuts nothing."""
    longest = 0
    for record in records:
        ids = tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        longest = max(longest, len(ids))
    return longest


def build_trainer(config: TrainingConfig, rows: Sequence[DatasetRow], *, base_model: str, output_dir: Path,
                  callbacks: Sequence[Any] = (), model_and_tokenizer: tuple[Any, Any] | None = None) -> Any:
    """TRL's ``SFTTrainer`` for a run, its dataset tokenised (``trainer.train_dataset``), not yet trained.

    ``model_and_tokenizer`` skips loading ``base_model`` (tests and the benchmark pass a model they built).
    """
    import torch
    from datasets import Dataset, disable_progress_bars
    from transformers import PrinterCallback
    from trl import SFTTrainer

    from core.planners.local_planner import load_chat_model

    if model_and_tokenizer is None:
        tokenizer, model, device = load_chat_model(base_model)
    else:
        model, tokenizer = model_and_tokenizer
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # training pads after the completion (the planner pads left to generate)
    records = training_records(rows)
    max_length = config.max_length or longest_example(records, tokenizer)
    args = sft_config(config, output_dir, device=device, max_length=max_length)
    disable_progress_bars()  # a worker's log is not a terminal; progress goes to the job instead
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tokenizer,
                         peft_config=lora_config(config), callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)
    return trainer


def train(
    config: TrainingConfig,
    rows: Sequence[DatasetRow],
    *,
    base_model: str,
    output_dir: Path,
    resume_from: Path | None = None,
    on_step: Callable[[StepLog], None] = lambda log: None,
    on_checkpoint: Callable[[int, Path, float | None], None] = lambda step, path, loss: None,
    should_stop: Callable[[], bool] = lambda: False,
    model_and_tokenizer: tuple[Any, Any] | None = None,
) -> TrainingOutcome:
    """Train a LoRA adapter on ``rows`` (the train split) until ``config.steps`` or until ``should_stop``.

    ``resume_from`` is a trainer checkpoint directory (optimiser, scheduler and RNG state with the
    adapter): the step count, learning-rate schedule and data order go on from there. A stop saves a
    checkpoint at the step it happens, so nothing trained is lost.
    """
    from transformers import TrainerCallback

    clock: dict[str, Any] = {"start": time.perf_counter(), "last": time.perf_counter(), "tokens": None}
    stop = {"asked": False}

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            if not logs or "loss" not in logs:
                return
            now = time.perf_counter()
            tokens = logs.get("num_tokens")
            rate = None
            if tokens is not None and clock["tokens"] is not None and now > clock["last"]:
                rate = (float(tokens) - float(clock["tokens"])) / (now - clock["last"])
            clock["last"], clock["tokens"] = now, tokens
            loss = float(logs["loss"])
            on_step(StepLog(step=int(state.global_step), loss=loss if math.isfinite(loss) else float("nan"),
                            learning_rate=float(logs.get("learning_rate", 0.0)), tokens_per_s=rate,
                            epoch=logs.get("epoch"), elapsed_s=now - clock["start"]))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if should_stop():
                stop["asked"] = True
                control.should_save = True
                control.should_training_stop = True
            elif state.global_step >= state.max_steps:
                control.should_save = True  # the last step is always a checkpoint

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            losses = [h["loss"] for h in state.log_history if "loss" in h]
            on_checkpoint(int(state.global_step), path, float(losses[-1]) if losses else None)

    trainer = build_trainer(config, rows, base_model=base_model, output_dir=output_dir, callbacks=[Progress()],
                            model_and_tokenizer=model_and_tokenizer)
    args = trainer.args
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    wall = time.perf_counter() - started
    details = {"device": "cpu" if args.use_cpu else "cuda", "precision": "bf16" if args.bf16 else "fp16" if args.fp16
               else "fp32", "train_examples": len(trainer.train_dataset), "max_length": args.max_length,
               "seed": config.seed, "wall_s": round(wall, 3), "train_loss": round(float(result.training_loss), 6)}
    return TrainingOutcome(step=int(trainer.state.global_step), stopped=stop["asked"], details=details)


__all__ = ["ADAPTER_FILES", "StepLog", "TrainingOutcome", "build_trainer", "longest_example", "lora_config", "sft_config", "train",
           "training_records"]
