"""A base model that can learn in a few CPU steps, a dataset it can memorise, and a worker that trains it.

The tiny Qwen2-style model of ``tests/tiny_llm.py`` with wide embeddings (``init_std``): LoRA does
not train the output head (tied to the embeddings), so the head must already be able to make sharp
distributions for a few LoRA steps to memorise the two answers below (loss ~14 → < 0.01 in 12 steps).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from finetune.dataset_rows import DatasetRow
from jobs.queue import JobRecord
from jobs.services import Services, datasets, training
from jobs.services.permissions import Actor
from tests.conftest import running_worker
from tests.tiny_llm import LABELS, save_tiny_planner

#: Two requests with one answer each; the train and val splits hold both (memorising is the point).
MEMO = (("remove the hat", [{"command": "remove", "paras": [["Hair"]]}]),
        ("make the pants navy", [{"command": "recolor", "paras": [["Pants"], "navy"]}]))
#: Hyper-parameters that memorise MEMO in 12 steps on the tiny model.
MEMO_CONFIG: dict[str, Any] = {"steps": 12, "checkpoint_every": 6, "learning_rate": 2e-2, "batch_size": 2,
                               "warmup_ratio": 0.0, "lora_dropout": 0.0}


def save_tiny_base(directory: Path) -> Path:
    """The tiny base model (tokenizer + weights) in ``directory``: what a run's ``base_model`` names."""
    directory.mkdir(parents=True, exist_ok=True)
    return save_tiny_planner(directory, hidden=64, intermediate=128, init_std=0.5)


def memo_rows(split: str) -> list[DatasetRow]:
    return [DatasetRow(request=request, language="en", labels=tuple(LABELS), commands=tuple(commands),
                       source="template", checks={"contract": True}, split=split)
            for request, commands in MEMO]


def make_memo_dataset(services: Services, admin: Actor, name: str = "memo") -> str:
    """A dataset whose train and val splits are MEMO; returns its ``NAME@N``."""
    version = datasets.create_version(services, admin, name, memo_rows("train") + memo_rows("val"),
                                      note="two answers to memorise", split_seed=0)
    return version.spec


def finish_training(services: Services, run_id: int, *, timeout_s: float = 600) -> JobRecord:
    """Run a worker (gpu and batch lanes) until the run's job and its checkpoints' evaluations are done."""
    with running_worker(services, lanes=["gpu", "batch"]):
        admin = _admin(services)
        run = training.get_training_run(services, admin, run_id)
        assert run.job_id is not None
        job = services.queue.wait(run.job_id, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        for job_id in training.evaluation_jobs(services, admin, run_id):
            services.queue.wait(job_id, timeout_s=max(1.0, deadline - time.monotonic()))
        return job


def _admin(services: Services) -> Actor:
    from jobs.services.permissions import local_actor

    return local_actor(services)
