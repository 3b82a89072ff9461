"""Evaluation runs at the service door: score a planner on a dataset version's split, keep every example.

A run is an ``eval_run`` batch job (``jobs.handlers.eval_run``) with progress and Cancel; what it
stores (the planner and how it decoded, the dataset version and split, per-example replies and
scores, the aggregate metrics, timings, who ran it) is read back here for the Evaluation page and
``chatedit eval``. Everything needs ``datasets.manage`` (evaluation is an admin's work).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from db.models import EvalExample, EvalRun
from finetune.metrics import (  # noqa: F401 - re-exported: app/ reads metric names only through this door
    ERROR_TYPES,
    LANGUAGE_METRICS,
    METRIC_LABELS,
    METRIC_NAMES,
    NONE,
    RATE_METRICS,
    format_metric,
    metrics_table,
)
from jobs.services import Services
from jobs.services.accounts import display_names
from jobs.services.datasets import get_version, parse_spec
from jobs.services.permissions import Actor, require

PLANNERS = ("rules", "reference", "openai", "local")
RUN_STATUSES = ("running", "succeeded", "failed", "cancelled")


class EvaluationError(ValueError):
    """An evaluation that cannot be started or read; the message is a sentence."""


@dataclass(frozen=True)
class RunRecord:
    id: int
    planner: str
    planner_detail: dict[str, Any]
    constrained: bool | None
    dataset: str
    split: str | None
    example_count: int
    metrics: dict[str, Any]
    timings: dict[str, Any]
    status: str
    job_id: int | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def label(self) -> str:
        """How charts and tables name the run: "#3 local (constrained) on seed@2/test"."""
        decoding = "" if self.constrained is None else (" (constrained)" if self.constrained else " (free)")
        model = self.planner_detail.get("model")
        who = f"{self.planner} {model}" if model else self.planner
        if self.planner_detail.get("checkpoint") is not None:  # a fine-tuning checkpoint: its run and step say which
            who = f"{self.planner} run {self.planner_detail.get('training_run')} step {self.planner_detail.get('step')}"
        return f"#{self.id} {who}{decoding} on {self.dataset}{'/' + self.split if self.split else ''}"


@dataclass(frozen=True)
class ExampleRecord:
    position: int
    request: str
    language: str
    labels: list[str]
    expected: list[dict[str, Any]]
    reply: str | None
    produced: list[Any] | None
    score: dict[str, Any]


def submit_run(services: Services, actor: Actor, *, planner: str, dataset: str, split: str | None = "test",
               constrained: bool | None = None, limit: int | None = None, model: str | None = None,
               batch_size: int = 8, checkpoint: int | None = None) -> int:
    """Queue an ``eval_run`` job; the dataset is ``NAME[@N]`` (the newest version when no number is given).

    ``checkpoint`` (local planner only) evaluates a fine-tuning checkpoint: its run's base model with its adapter.
    """
    require(actor, "datasets.manage")
    if planner not in PLANNERS:
        raise EvaluationError(f"There is no planner called {planner!r}; the planners are {', '.join(PLANNERS)}.")
    name, number = parse_spec(dataset)
    version = get_version(services, actor, name, number)  # DatasetNotFound: a sentence
    if constrained is not None and planner != "local":
        raise EvaluationError("Only the local planner decodes under a grammar or not; leave constrained unset.")
    payload: dict[str, Any] = {"planner": planner, "dataset": version.spec, "split": split, "limit": limit,
                               "batch_size": batch_size}
    if constrained is not None:
        payload["constrained"] = constrained
    if model:
        payload["model"] = model
    if checkpoint is not None:
        if planner != "local":
            raise EvaluationError("A fine-tuning checkpoint is evaluated by the local planner; choose planner local.")
        payload["checkpoint"] = checkpoint
    return services.queue.enqueue("eval_run", payload, lane="batch", owner_id=actor.id, max_attempts=1)


def list_runs(services: Services, actor: Actor, *, limit: int = 200) -> list[RunRecord]:
    """Stored runs, newest first."""
    require(actor, "datasets.manage")
    with services.database.session() as session:
        names = display_names(session)
        rows = session.exec(select(EvalRun).order_by(col(EvalRun.id).desc()).limit(limit)).all()
        return [_run(r, names) for r in rows]


def get_run(services: Services, actor: Actor, run_id: int) -> RunRecord:
    require(actor, "datasets.manage")
    with services.database.session() as session:
        row = session.get(EvalRun, run_id)
        if row is None:
            raise EvaluationError(f"There is no evaluation run {run_id}.")
        return _run(row, display_names(session))


def run_of_job(services: Services, actor: Actor, job_id: int) -> RunRecord | None:
    """The run an ``eval_run`` job made (None until it started)."""
    require(actor, "datasets.manage")
    with services.database.session() as session:
        row = session.exec(select(EvalRun).where(EvalRun.job_id == job_id)).first()
        return None if row is None else _run(row, display_names(session))


def run_examples(services: Services, actor: Actor, run_id: int) -> list[ExampleRecord]:
    """Every example of a run, in dataset order."""
    require(actor, "datasets.manage")
    with services.database.session() as session:
        rows = session.exec(select(EvalExample).where(EvalExample.run_id == run_id)
                            .order_by(col(EvalExample.position))).all()
        return [ExampleRecord(position=r.position, request=r.request, language=r.language, labels=list(r.labels),
                              expected=list(r.expected), reply=r.reply,
                              produced=None if r.produced is None else list(r.produced), score=dict(r.score))
                for r in rows]



def _run(r: EvalRun, names: dict[int, str]) -> RunRecord:
    assert r.id is not None
    return RunRecord(id=r.id, planner=r.planner, planner_detail=dict(r.planner_detail), constrained=r.constrained,
                     dataset=r.dataset, split=r.split, example_count=r.example_count, metrics=dict(r.metrics),
                     timings=dict(r.timings), status=r.status, job_id=r.job_id, created_by=names.get(r.created_by, "?"),
                     created_at=r.created_at, finished_at=r.finished_at)
