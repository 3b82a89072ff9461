"""The ``finetune`` job: one training run (``training_runs``) trained, or resumed, in this worker.

Payload (:class:`FinetunePayload`): ``run``, the run's id; everything else (base model, dataset
version, hyper-parameters) is the run's row, so a resumed or re-claimed job trains exactly the run
it was queued for. The job always starts from the run's last checkpoint that has a trainer state
(none: from the base model), so Cancel-then-resume, a worker stopped for shutdown and a worker killed
mid-run all go on from where the last checkpoint left them; logged steps past it are dropped and
logged again, so the loss curve has one point per step.

Every step is stored as it is logged (loss, learning rate, tokens/s) and reported as the job's
progress with an ETA. Each checkpoint is stored as two blobs, the adapter and the whole trainer
state, and queued for evaluation on the val split, constrained and free (``eval_run`` jobs).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import sqlalchemy as sa
from pydantic import Field

from jobs.errors import JobCancelled, PermanentError
from jobs.registry import Payload

if TYPE_CHECKING:
    from finetune.training import StepLog
    from jobs.context import JobContext


class FinetunePayload(Payload):
    run: Annotated[int, Field(ge=1)]


def handle(ctx: JobContext) -> dict[str, Any]:
    from core.errors import first_line
    from db.models import TrainingCheckpoint, TrainingRun, TrainingStep
    from db.types import utcnow
    from finetune.training import ADAPTER_FILES, train
    from finetune.training_config import TrainingConfig
    from jobs.planner_models import pack_directory, unpack_blob
    from jobs.services import datasets
    from jobs.services.permissions import actor_for
    from jobs.services.training import last_resumable_checkpoint

    services = ctx.services
    run_id = FinetunePayload.of(ctx).run
    actor = actor_for(services, ctx.job.owner_id)
    with services.database.session() as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            raise PermanentError(f"There is no training run {run_id}.")
        if run.job_id != ctx.job.id:
            raise PermanentError(f"Training run {run_id} is run by job {run.job_id} now, not by this one.")
        config = TrainingConfig.model_validate(run.config)
        base_model, dataset, total = run.base_model, run.dataset, run.total_steps
        resumable = last_resumable_checkpoint(session, run_id)
        last = None if resumable is None else (resumable.step, resumable.state_key)
    name, number = datasets.parse_spec(dataset)
    rows = [r for r in datasets.usable_rows(services, actor, name, number)
            if r.split == "train" and r.checks.get("contract", True) is True]
    if not rows:
        raise PermanentError(f"{dataset} has no train rows to train on.")
    work = Path(services.settings.data_dir) / "training" / f"run-{run_id}"
    resume_from = None
    start_step = 0
    if last is not None:
        start_step, state_key = last
        resume_from = unpack_blob(services, state_key, work / f"checkpoint-{start_step}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    with services.database.write_session() as session:
        session.execute(sa.delete(TrainingStep.__table__).where(  # type: ignore[attr-defined]
            TrainingStep.__table__.c.run_id == run_id, TrainingStep.__table__.c.step > start_step))  # type: ignore[attr-defined]
        session.execute(sa.update(TrainingRun.__table__).where(TrainingRun.__table__.c.id == run_id)  # type: ignore[attr-defined]
                        .values(status="running", step=start_step, error=None))
    began = time.perf_counter()
    #: Seconds spent storing steps and progress, and storing checkpoints: the job's own cost beside training.
    spent = {"reporting_s": 0.0, "checkpointing_s": 0.0}

    def on_step(log: StepLog) -> None:
        mark = time.perf_counter()
        try:
            _store_step(log)
        finally:
            spent["reporting_s"] += time.perf_counter() - mark

    def _store_step(log: StepLog) -> None:
        with services.database.write_session() as session:
            session.add(TrainingStep(run_id=run_id, step=log.step, loss=log.loss, learning_rate=log.learning_rate,
                                     tokens_per_s=log.tokens_per_s, epoch=log.epoch))
            session.execute(sa.update(TrainingRun.__table__).where(TrainingRun.__table__.c.id == run_id)  # type: ignore[attr-defined]
                            .values(step=log.step))
        try:
            ctx.progress(min(log.step / total, 0.999), _progress_line(log, total, start_step, time.perf_counter() - began))
        except JobCancelled:
            pass  # the flag is set: the trainer stops after this step, with a checkpoint (should_stop below)

    def on_checkpoint(step: int, path: Path, loss: float | None) -> None:
        mark = time.perf_counter()
        try:
            _store_checkpoint(step, path, loss)
        finally:
            spent["checkpointing_s"] += time.perf_counter() - mark

    def _store_checkpoint(step: int, path: Path, loss: float | None) -> None:
        adapter_key = services.blobs.put(pack_directory(path, ADAPTER_FILES))
        state_key = services.blobs.put(pack_directory(path))
        with services.database.write_session() as session:
            checkpoint = TrainingCheckpoint(run_id=run_id, step=step, adapter_key=adapter_key, state_key=state_key,
                                            loss=loss)
            session.add(checkpoint)
            session.flush()
            checkpoint_id = checkpoint.id
        assert checkpoint_id is not None
        if not ctx.should_stop:  # a checkpoint made because the run was stopped is for resuming, not evaluating
            _queue_evaluations(ctx, actor, dataset, checkpoint_id, config.eval_limit)

    status = "failed"
    error = None
    outcome = None
    try:
        outcome = train(config.model_copy(update={"steps": total}), rows, base_model=base_model, output_dir=work,
                        resume_from=resume_from, on_step=on_step, on_checkpoint=on_checkpoint,
                        should_stop=lambda: ctx.should_stop)
        if outcome.stopped:
            status = "cancelled" if ctx.signals.cancel.is_set() else "queued"
            ctx.check()  # cancelled, handed back on shutdown or lost: the queue records which
        status = "succeeded"
    except JobCancelled:
        status = "cancelled"
        raise
    except Exception as exc:
        if status == "failed":
            error = first_line(exc)
        raise
    finally:
        with services.database.write_session() as session:
            run = session.get(TrainingRun, run_id)
            assert run is not None
            run.status, run.error = status, error
            if outcome is not None:
                run.details = {**run.details, **outcome.details, "resumed_from": start_step or None,
                               **{k: round(v, 3) for k, v in spent.items()}}
            if status in ("succeeded", "cancelled", "failed"):
                run.finished_at = utcnow()
            session.add(run)
    ctx.progress(1.0, f"trained {outcome.step} steps")
    return {"run": run_id, "step": outcome.step, "details": outcome.details}


def _queue_evaluations(ctx: JobContext, actor: Any, dataset: str, checkpoint_id: int, limit: int | None) -> None:
    """An ``eval_run`` of the checkpoint on the val split, constrained and free, remembered with it."""
    from db.models import TrainingCheckpoint
    from jobs.services.datasets import get_version, parse_spec
    from jobs.services.evaluations import submit_run

    name, number = parse_spec(dataset)
    if not get_version(ctx.services, actor, name, number).split_counts.get("val"):
        return  # nothing to evaluate on; the page says the dataset has no val split
    jobs = {kind: submit_run(ctx.services, actor, planner="local", dataset=dataset, split="val",
                             constrained=kind == "constrained", limit=limit, checkpoint=checkpoint_id)
            for kind in ("constrained", "free")}
    with ctx.services.database.write_session() as session:
        row = session.get(TrainingCheckpoint, checkpoint_id)
        assert row is not None
        row.eval_jobs = jobs
        session.add(row)


def _progress_line(log: StepLog, total: int, start_step: int, elapsed: float) -> str:
    """'step 12 of 300 · loss 1.234 · 456 tokens/s · about 3 min left'."""
    parts = [f"step {log.step} of {total}", f"loss {log.loss:.4g}"]
    if log.tokens_per_s:
        parts.append(f"{log.tokens_per_s:,.0f} tokens/s")
    done = log.step - start_step
    if done > 0 and log.step < total:
        left = (total - log.step) * elapsed / done
        parts.append(f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left")
    return " · ".join(parts)
