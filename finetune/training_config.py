"""The hyper-parameters of a LoRA fine-tuning run: defaults, bounds and the sentence for a bad value.

Light on purpose (pydantic only): the Fine-tuning page, ``chatedit finetune`` and the service door
validate a run with it in a process that never imports torch; the ``finetune`` job hands the same
object to :mod:`finetune.training`. The defaults are those of LLaMA-Factory's LoRA SFT example
(``examples/train_lora/llama3_lora_sft.yaml``: rank 8, all linear layers, lr 1e-4, cosine, warm-up
0.1), with alpha 16 and dropout 0.05 as peft's usual LoRA recipe and the issue name them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class TrainingConfig(BaseModel):
    """How one run trains; stored with the run (``training_runs.config``) so it can be resumed and reproduced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: Annotated[int, Field(ge=1, le=100_000, description="Optimiser steps in all.")] = 300
    batch_size: Annotated[int, Field(ge=1, le=256, description="Examples per device per forward pass.")] = 1
    gradient_accumulation: Annotated[int, Field(ge=1, le=256, description="Forward passes per optimiser step.")] = 1
    learning_rate: Annotated[float, Field(gt=0, le=1.0)] = 1e-4
    scheduler: Annotated[str, Field(pattern=r"^(cosine|linear|constant|constant_with_warmup)$")] = "cosine"
    warmup_ratio: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    lora_r: Annotated[int, Field(ge=1, le=256)] = 8
    lora_alpha: Annotated[int, Field(ge=1, le=1024)] = 16
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    #: Every this many steps a checkpoint is stored (as an adapter blob) and evaluated on the val split.
    checkpoint_every: Annotated[int, Field(ge=1, le=100_000)] = 50
    #: Loss, learning rate and speed are stored every this many steps (1: every step).
    log_every: Annotated[int, Field(ge=1, le=10_000)] = 1
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 42
    #: Longest tokenised example; None: the longest in the train split (nothing is cut).
    max_length: Annotated[int, Field(ge=16, le=32_768)] | None = None
    #: Examples of the val split each checkpoint is evaluated on (None: all of them).
    eval_limit: Annotated[int, Field(ge=1, le=100_000)] | None = 64

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.gradient_accumulation

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class InvalidTrainingConfig(ValueError):
    """Hyper-parameters out of bounds; the message names each problem in a sentence."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("These training settings cannot be used: " + "; ".join(problems) + ".")
        self.problems = problems


def training_config(values: dict[str, Any]) -> TrainingConfig:
    """A :class:`TrainingConfig` from a form or a command line (None values keep the default)."""
    try:
        return TrainingConfig.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            problems.append(f"{where}: {error['msg'].lower()}")
        raise InvalidTrainingConfig(problems) from None


__all__ = ["InvalidTrainingConfig", "TrainingConfig", "training_config"]
