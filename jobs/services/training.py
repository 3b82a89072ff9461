"""Fine-tuning at the service door: LoRA training runs, their loss curves and checkpoints, and the planners
they become.

A run trains a local planner model (a ``.gguf`` file, an HF id or a model directory) on a dataset
version's train split as a ``finetune`` job on the ``gpu`` lane (``jobs.handlers.finetune``). The run
outlives its jobs: Cancel stops it at the next step with a checkpoint, :func:`resume_training` queues a
new job that goes on from the last checkpoint, and a worker that dies mid-run leaves a job that the next
worker resumes the same way. Every checkpoint is an adapter blob, evaluated on the val split (an
``eval_run`` each, constrained and free). **Use as planner** (:func:`register_planner`) makes a
checkpoint a planner everyone may choose in Settings; an admin may make one the team's default
(:func:`set_default_planner`), which then answers everyone who chose no planner.

Training and registering need ``training.run``; the registered planners are read by everyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from db.models import PlannerModel, TrainingCheckpoint, TrainingRun, TrainingStep
from db.types import utcnow
from finetune.training_config import InvalidTrainingConfig, TrainingConfig, training_config
from jobs.queue import CancelOutcome
from jobs.services import Services
from jobs.services.accounts import display_names, record_audit
from jobs.services.datasets import get_version, parse_spec
from jobs.services.evaluations import RunRecord, run_of_job
from jobs.services.permissions import Actor, require

#: The job kind and the lane it runs on (a worker with a GPU serves the gpu lane).
FINETUNE_KIND = "finetune"
FINETUNE_LANE = "gpu"
#: A worker that dies mid-run leaves the job to be claimed again this many times in all.
FINETUNE_ATTEMPTS = 3
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
PLANNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

__all__ = ["ACTIVE", "FINETUNE_KIND", "CheckpointRecord", "InvalidTrainingConfig", "PlannerChoice",
           "PlannerModelRecord", "StepRecord", "TrainingConfig", "TrainingError", "TrainingRunRecord",
           "cancel_training", "checkpoints", "evaluation_jobs", "get_training_run", "list_training_runs",
           "planner_choice", "planner_models", "register_planner", "unregister_planner", "resume_training", "set_default_planner", "start_training",
           "training_config", "training_steps"]


class TrainingError(ValueError):
    """A training request that cannot be done; the message is a sentence, the data in attributes."""

    def __init__(self, message: str, **data: object) -> None:
        super().__init__(message)
        self.data = data


@dataclass(frozen=True)
class TrainingRunRecord:
    id: int
    base_model: str
    dataset: str
    config: TrainingConfig
    status: str
    step: int
    total_steps: int
    job_id: int | None
    details: dict[str, Any]
    error: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def label(self) -> str:
        """How tables and charts name the run: "#2 SmolLM2-135M-Instruct.Q4_1.gguf on seed@2"."""
        base = self.base_model.rstrip("/").rsplit("/", 1)[-1]
        return f"#{self.id} {base} on {self.dataset}"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True)
class StepRecord:
    step: int
    loss: float
    learning_rate: float
    tokens_per_s: float | None
    epoch: float | None
    at: datetime


@dataclass(frozen=True)
class CheckpointRecord:
    id: int
    run_id: int
    step: int
    loss: float | None
    adapter_key: str
    resumable: bool
    #: The evaluation of each decoding ("constrained", "free"): None until its job started.
    evaluations: dict[str, RunRecord | None]
    #: The name it was registered under as a planner, if it was.
    planner_name: str | None
    created_at: datetime


@dataclass(frozen=True)
class PlannerModelRecord:
    id: int
    name: str
    base_model: str
    adapter_key: str
    checkpoint_id: int | None
    run_id: int | None
    step: int | None
    is_default: bool
    registered_by: str
    created_at: datetime


@dataclass(frozen=True)
class PlannerChoice:
    """Which planner answers a person: its name, and for ``local`` the registered fine-tuned model (None: the base)."""

    planner: str
    model: PlannerModelRecord | None


# ---------------------------------------------------------------------- runs


def start_training(services: Services, actor: Actor, *, base_model: str, dataset: str,
                   config: TrainingConfig | dict[str, Any] | None = None) -> TrainingRunRecord:
    """Queue a run of ``base_model`` on ``dataset``'s train split (``NAME[@N]``, the newest version if no N)."""
    require(actor, "training.run")
    config = config if isinstance(config, TrainingConfig) else training_config(config or {})
    base_model = base_model.strip()
    if not base_model:
        raise TrainingError("Name the base model: a .gguf file, a Hugging Face id or a model directory.")
    if len(base_model) > 500:
        raise TrainingError("The base model's name is longer than 500 characters.")
    name, number = parse_spec(dataset)
    version = get_version(services, actor, name, number)  # DatasetNotFound: a sentence
    if not version.split_counts.get("train"):
        raise TrainingError(f"{version.spec} has no train split: split it first (the Datasets page, or "
                            f"`chatedit datasets split {name}`).", dataset=version.spec)
    with services.database.write_session() as session:
        run = TrainingRun(base_model=base_model, dataset=version.spec, config=config.to_dict(), status="queued",
                          total_steps=config.steps, created_by=actor.id,
                          details={"val_examples": version.split_counts.get("val", 0)})
        session.add(run)
        session.flush()
        assert run.id is not None
        run_id = run.id
        record_audit(session, actor.id, "training.start", "training_run", str(run_id),
                     {"base_model": base_model, "dataset": version.spec, "steps": config.steps})
    _queue(services, actor, run_id)
    return get_training_run(services, actor, run_id)


def resume_training(services: Services, actor: Actor, run_id: int, *, steps: int | None = None) -> TrainingRunRecord:
    """Queue a job that goes on from the run's last checkpoint (to ``steps`` in all, if given)."""
    require(actor, "training.run")
    current = get_training_run(services, actor, run_id)  # a run whose job ended unrecorded may be resumed
    with services.database.write_session() as session:
        run = _run_row(session, run_id)
        if current.active:
            raise TrainingError(f"Training run {run_id} is {run.status}; it can be resumed once it stopped.",
                                run=run_id)
        last = last_resumable_checkpoint(session, run_id)
        if last is None:
            raise TrainingError(f"Training run {run_id} stored no checkpoint, so there is nothing to resume from; "
                                "start a new run instead.", run=run_id)
        total = run.total_steps if steps is None else steps
        if total <= last.step:
            raise TrainingError(f"Training run {run_id} is at step {last.step} already; give more steps than that "
                                f"to go on (e.g. --steps {last.step + run.config.get('checkpoint_every', 50)}).",
                                run=run_id, step=last.step)
        config = training_config({**run.config, "steps": total})
        run.config, run.total_steps, run.status, run.error, run.finished_at = config.to_dict(), total, "queued", None, None
        session.add(run)
        record_audit(session, actor.id, "training.resume", "training_run", str(run_id),
                     {"from_step": last.step, "steps": total})
    _queue(services, actor, run_id)
    return get_training_run(services, actor, run_id)


def _queue(services: Services, actor: Actor, run_id: int) -> int:
    job_id = services.queue.enqueue(FINETUNE_KIND, {"run": run_id}, lane=FINETUNE_LANE, owner_id=actor.id,
                                    max_attempts=FINETUNE_ATTEMPTS)
    with services.database.write_session() as session:
        run = _run_row(session, run_id)
        run.job_id = job_id
        session.add(run)
    return job_id


def cancel_training(services: Services, actor: Actor, run_id: int) -> bool:
    """Ask the run's job to stop at the next step (it keeps a checkpoint there); False when it was not running."""
    require(actor, "training.run")
    run = get_training_run(services, actor, run_id)
    if not run.active or run.job_id is None:
        return False
    outcome = services.queue.cancel(run.job_id)
    if outcome is CancelOutcome.CANCELLED:  # it never started, so no worker will record that it stopped
        with services.database.write_session() as session:
            row = _run_row(session, run_id)
            row.status, row.finished_at = "cancelled", utcnow()
            session.add(row)
    return outcome is not CancelOutcome.ALREADY_FINISHED


def list_training_runs(services: Services, actor: Actor, *, limit: int = 200) -> list[TrainingRunRecord]:
    """Runs, newest first."""
    require(actor, "training.run")
    with services.database.session() as session:
        names = display_names(session)
        rows = session.exec(select(TrainingRun).order_by(col(TrainingRun.id).desc()).limit(limit)).all()
        records = [_run_record(r, names) for r in rows]
    return [_as_its_job_ended(services, r) for r in records]


def get_training_run(services: Services, actor: Actor, run_id: int) -> TrainingRunRecord:
    require(actor, "training.run")
    with services.database.session() as session:
        record = _run_record(_run_row(session, run_id), display_names(session))
    return _as_its_job_ended(services, record)


def _as_its_job_ended(services: Services, run: TrainingRunRecord) -> TrainingRunRecord:
    """A run still marked active whose job has ended without saying so (its worker was killed for the last time,
    and the queue failed the job): the job's end is the run's, so pages stop waiting and Resume is offered."""
    if not run.active or run.job_id is None:
        return run
    job = services.queue.get(run.job_id)
    if not job.terminal:
        return run
    status = "cancelled" if job.status.value == "cancelled" else "failed"
    return replace(run, status=status, error=run.error or job.error_message
                   or f"Its job {job.id} ended ({job.status.value}) before the run finished.")


def training_steps(services: Services, actor: Actor, run_id: int) -> list[StepRecord]:
    """The run's logged steps in order: its loss curve."""
    require(actor, "training.run")
    with services.database.session() as session:
        rows = session.exec(select(TrainingStep).where(TrainingStep.run_id == run_id)
                            .order_by(col(TrainingStep.step))).all()
        return [StepRecord(step=r.step, loss=r.loss, learning_rate=r.learning_rate, tokens_per_s=r.tokens_per_s,
                           epoch=r.epoch, at=r.at) for r in rows]


def checkpoints(services: Services, actor: Actor, run_id: int) -> list[CheckpointRecord]:
    """The run's checkpoints by step, each with its evaluations and the planner name it was registered under."""
    require(actor, "training.run")
    with services.database.session() as session:
        rows = session.exec(select(TrainingCheckpoint).where(TrainingCheckpoint.run_id == run_id)
                            .order_by(col(TrainingCheckpoint.step))).all()
        registered = {int(c): n for c, n in session.exec(
            select(PlannerModel.checkpoint_id, PlannerModel.name).where(col(PlannerModel.checkpoint_id).is_not(None)))}
    records = []
    for r in rows:
        assert r.id is not None
        evaluations = {kind: (run_of_job(services, actor, int(job)) if job is not None else None)
                       for kind, job in sorted(r.eval_jobs.items())}
        records.append(CheckpointRecord(id=r.id, run_id=r.run_id, step=r.step, loss=r.loss, adapter_key=r.adapter_key,
                                        resumable=r.state_key is not None, evaluations=evaluations,
                                        planner_name=registered.get(r.id), created_at=r.created_at))
    return records


def evaluation_jobs(services: Services, actor: Actor, run_id: int, *, unfinished: bool = False) -> list[int]:
    """The ``eval_run`` jobs queued for the run's checkpoints (only those not ended yet, with ``unfinished``)."""
    require(actor, "training.run")
    with services.database.session() as session:
        rows = session.exec(select(TrainingCheckpoint).where(TrainingCheckpoint.run_id == run_id)
                            .order_by(col(TrainingCheckpoint.step))).all()
        jobs = [int(j) for r in rows for _, j in sorted(r.eval_jobs.items())]
    return [j for j in jobs if not services.queue.get(j).terminal] if unfinished else jobs


def checkpoint_source(services: Services, checkpoint_id: int) -> tuple[str, str, int, int]:
    """(base model, adapter blob key, run id, step) of a checkpoint: what an evaluation of it loads (worker side)."""
    with services.database.session() as session:
        row = session.get(TrainingCheckpoint, checkpoint_id)
        if row is None:
            raise TrainingError(f"There is no checkpoint {checkpoint_id}.", checkpoint=checkpoint_id)
        run = _run_row(session, row.run_id)
        return run.base_model, row.adapter_key, row.run_id, row.step


# ---------------------------------------------------------------------- planners made of checkpoints


def register_planner(services: Services, actor: Actor, checkpoint_id: int, name: str, *,
                     make_default: bool = False) -> PlannerModelRecord:
    """Offer a checkpoint as a planner in everyone's Settings (under ``name``), optionally as the team's default."""
    require(actor, "training.run")
    name = name.strip()
    if not PLANNER_NAME.match(name):
        raise TrainingError(f"Name a planner with letters, digits, '.', '_' or '-' (up to 64), not {name!r}.",
                            name=name)
    with services.database.write_session() as session:
        checkpoint = session.get(TrainingCheckpoint, checkpoint_id)
        if checkpoint is None:
            raise TrainingError(f"There is no checkpoint {checkpoint_id}.", checkpoint=checkpoint_id)
        if session.exec(select(PlannerModel).where(PlannerModel.name == name)).first() is not None:
            raise TrainingError(f"There is a planner called {name!r} already; choose another name.", name=name)
        run = _run_row(session, checkpoint.run_id)
        if make_default:
            session.execute(sa.update(PlannerModel).values(is_default=False))
        row = PlannerModel(name=name, base_model=run.base_model, adapter_key=checkpoint.adapter_key,
                           checkpoint_id=checkpoint_id, is_default=make_default, registered_by=actor.id)
        session.add(row)
        session.flush()
        assert row.id is not None
        model_id = row.id
        record_audit(session, actor.id, "planner.register", "planner_model", str(model_id),
                     {"name": name, "checkpoint": checkpoint_id, "run": run.id, "step": checkpoint.step,
                      "default": make_default})
    return _planner_model(services, model_id)


def set_default_planner(services: Services, actor: Actor, model_id: int | None) -> None:
    """Make a registered planner the team's default (None: no default; people get the installation's planner)."""
    require(actor, "training.run")
    with services.database.write_session() as session:
        if model_id is not None and session.get(PlannerModel, model_id) is None:
            raise TrainingError(f"There is no registered planner {model_id}.", planner=model_id)
        session.execute(sa.update(PlannerModel).values(is_default=False))
        if model_id is not None:
            session.execute(sa.update(PlannerModel).where(col(PlannerModel.id) == model_id).values(is_default=True))
        record_audit(session, actor.id, "planner.default", "planner_model", None if model_id is None else str(model_id),
                     {})


def unregister_planner(services: Services, actor: Actor, model_id: int) -> PlannerModelRecord:
    """Take a registered planner out of Settings (its checkpoint stays). Whoever chose it gets the team's default
    fine-tuned planner from their next request on; a request already queued for it fails with a sentence."""
    require(actor, "training.run")
    removed = planner_model_by_id(services, model_id)
    if removed is None:
        raise TrainingError(f"There is no registered planner {model_id}.", planner=model_id)
    with services.database.write_session() as session:
        session.execute(sa.delete(PlannerModel.__table__).where(  # type: ignore[attr-defined]
            PlannerModel.__table__.c.id == model_id))  # type: ignore[attr-defined]
        record_audit(session, actor.id, "planner.unregister", "planner_model", str(model_id),
                     {"name": removed.name, "checkpoint": removed.checkpoint_id})
    return removed


def planner_models(services: Services) -> list[PlannerModelRecord]:
    """Every registered planner, oldest first (Settings offers them to everyone, so no permission is asked)."""
    with services.database.session() as session:
        names = display_names(session)
        rows = session.exec(select(PlannerModel).order_by(col(PlannerModel.id))).all()
        steps = _checkpoint_steps(session, [r.checkpoint_id for r in rows if r.checkpoint_id is not None])
        return [_model_record(r, names, steps) for r in rows]


def planner_model_by_id(services: Services, model_id: int) -> PlannerModelRecord | None:
    return next((m for m in planner_models(services) if m.id == model_id), None)


def planner_choice(services: Services, preferences: dict[str, Any]) -> PlannerChoice:
    """The planner a person's preferences choose: theirs, else the team's default fine-tuned one, else the installation's.

    A person who chose ``local`` and a fine-tuned planner by name gets it; one who chose ``local`` and
    none gets the team's default fine-tuned planner when there is one (else the base model).
    """
    models = planner_models(services)
    default = next((m for m in models if m.is_default), None)
    name = preferences.get("planner") or ("local" if default is not None else services.settings.planner)
    if name != "local":
        return PlannerChoice(str(name), None)
    wanted = preferences.get("fine_tuned_planner")
    chosen = next((m for m in models if m.name == wanted), None) if wanted else None
    return PlannerChoice("local", chosen or default)


def _planner_model(services: Services, model_id: int) -> PlannerModelRecord:
    found = planner_model_by_id(services, model_id)
    assert found is not None
    return found


# ---------------------------------------------------------------------- rows → records


def _run_row(session: Any, run_id: int) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise TrainingError(f"There is no training run {run_id}.", run=run_id)
    return run


def last_resumable_checkpoint(session: Any, run_id: int) -> TrainingCheckpoint | None:
    """The run's latest checkpoint that has a trainer state: where resuming, or a re-claimed job, goes on from."""
    return session.exec(select(TrainingCheckpoint).where(TrainingCheckpoint.run_id == run_id,
                                                         col(TrainingCheckpoint.state_key).is_not(None))
                        .order_by(col(TrainingCheckpoint.step).desc())).first()



def _checkpoint_steps(session: Any, ids: list[int]) -> dict[int, tuple[int, int]]:
    if not ids:
        return {}
    rows = session.exec(select(TrainingCheckpoint.id, TrainingCheckpoint.run_id, TrainingCheckpoint.step)
                        .where(col(TrainingCheckpoint.id).in_(ids))).all()
    return {int(i): (int(r), int(s)) for i, r, s in rows}


def _run_record(r: TrainingRun, names: dict[int, str]) -> TrainingRunRecord:
    assert r.id is not None
    return TrainingRunRecord(id=r.id, base_model=r.base_model, dataset=r.dataset,
                             config=TrainingConfig.model_validate(r.config), status=r.status, step=r.step,
                             total_steps=r.total_steps, job_id=r.job_id, details=dict(r.details), error=r.error,
                             created_by=names.get(r.created_by, "?"), created_at=r.created_at,
                             finished_at=r.finished_at)


def _model_record(r: PlannerModel, names: dict[int, str], steps: dict[int, tuple[int, int]]) -> PlannerModelRecord:
    assert r.id is not None
    run_id, step = steps.get(r.checkpoint_id, (None, None)) if r.checkpoint_id is not None else (None, None)
    return PlannerModelRecord(id=r.id, name=r.name, base_model=r.base_model, adapter_key=r.adapter_key,
                              checkpoint_id=r.checkpoint_id, run_id=run_id, step=step, is_default=r.is_default,
                              registered_by=names.get(r.registered_by, "?"), created_at=r.created_at)
