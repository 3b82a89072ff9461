"""``chatedit finetune``: LoRA-tune the local planner from the command line, as the Fine-tuning page does.

It starts a run (or resumes one) through the service door, shows the training job's progress line
(step, loss, tokens/s, ETA) on stderr, waits for each checkpoint's evaluations on the val split and
prints the checkpoints table. A worker in this process trains (and evaluates) whenever no live worker
serves the gpu (batch) lane. Ctrl-C asks the run to stop at the next step; it keeps a checkpoint there,
and ``--resume RUN`` goes on from it. Acts for ``chatedit --as NAME`` (default the local admin), who
needs ``training.run``.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import click

from app.cli_common import acting_actor, open_services

#: How the checkpoints table names each evaluation's figures.
_COLUMNS = (("validity", "valid"), ("exact_match", "exact"), ("f1_micro", "F1"))


def register(cli: click.Group) -> None:
    cli.add_command(finetune)


@click.command("finetune")
@click.option("--base", "base_model", default=None,
              help="Base model: a .gguf file, an HF id or a model directory [default: the local planner's model].")
@click.option("--dataset", default=None, help="NAME or NAME@VERSION of a dataset with a train split.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Optimiser steps in all [default: 300].")
@click.option("--resume", "resume_run", type=click.IntRange(1), default=None,
              help="Go on with training run RUN from its last checkpoint (to --steps in all, if given).")
@click.option("--learning-rate", type=float, default=None, help="[default: 1e-4]")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="[default: 1]")
@click.option("--gradient-accumulation", type=click.IntRange(1), default=None, help="[default: 1]")
@click.option("--lora-r", type=click.IntRange(1), default=None, help="LoRA rank [default: 8]")
@click.option("--lora-alpha", type=click.IntRange(1), default=None, help="[default: 16]")
@click.option("--checkpoint-every", type=click.IntRange(1), default=None,
              help="Store and evaluate a checkpoint every N steps [default: 50].")
@click.option("--seed", type=click.IntRange(0), default=None, help="[default: 42]")
@click.option("--no-wait", is_flag=True, help="Queue the run and print its id; a worker trains it.")
@click.pass_obj
def finetune(obj: dict[str, Any], base_model: str | None, dataset: str | None, steps: int | None,
             resume_run: int | None, no_wait: bool, **hyper: Any) -> None:
    """LoRA-tune the local planner on a dataset version's train split; every checkpoint is evaluated on val."""
    from core.planner_install import local_planner_model
    from db.migrate import upgrade
    from jobs.services import training

    with open_services(obj, need_schema=False) as services:
        upgrade(services.database)
        actor = acting_actor(obj, services)
        try:
            if resume_run is not None:
                if base_model or dataset or any(v is not None for v in hyper.values()):
                    raise click.UsageError("--resume goes on with the run's own model, dataset and settings; give "
                                           "only --steps with it.")
                run = training.resume_training(services, actor, resume_run, steps=steps)
            else:
                if dataset is None:
                    raise click.UsageError("Name the dataset to train on: --dataset NAME[@VERSION].")
                base_model = base_model or local_planner_model(services.settings)
                if base_model is None:
                    raise click.UsageError("Name the base model with --base (a .gguf file, an HF id or a model "
                                           "directory), or install one: chatedit models install-planner smollm2.")
                run = training.start_training(services, actor, base_model=base_model, dataset=dataset,
                                              config={**hyper, "steps": steps})
        except (training.TrainingError, training.InvalidTrainingConfig, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        verb = "Resuming" if resume_run is not None else "Training"
        click.echo(f"{verb} run {run.id}: {run.label}, {run.total_steps} steps.", err=True)
        if no_wait:
            click.echo(str(run.id))
            return
        run = _watch(services, actor, run)
        _evaluations(services, actor, run.id)
        click.echo(_table(training.checkpoints(services, actor, run.id)))
        if run.status != "succeeded":
            raise click.ClickException(f"Training run {run.id} {run.status} at step {run.step}"
                                       + (f": {run.error}" if run.error else "")
                                       + (f". Go on with: chatedit finetune --resume {run.id}"
                                          if run.status in ("cancelled", "failed") else "."))
        click.echo(f"Run {run.id} trained {run.step} steps in {run.details.get('wall_s', 0):.0f} s on "
                   f"{run.details.get('device', '?')}; the Fine-tuning page can make a checkpoint the planner.",
                   err=True)


def _watch(services: Any, actor: Any, run: Any) -> Any:
    """Wait for the run's job with its progress line on stderr (a worker here if no live one serves gpu)."""
    from app.cli_edit import _lane_served, _quiet_worker
    from jobs.services import training

    settings = services.settings
    check_s = max(0.2, min(settings.worker_heartbeat_seconds, settings.job_lease_seconds / 3))
    shown = ""
    with ExitStack() as own_worker:
        started = False
        while True:
            try:
                if not started and not _lane_served(services, "gpu"):
                    own_worker.enter_context(_quiet_worker(services, "gpu"))
                    started = True
                job = services.queue.wait(run.job_id, timeout_s=check_s)
            except KeyboardInterrupt:
                training.cancel_training(services, actor, run.id)
                click.echo("\nAsked the run to stop at the next step; it keeps a checkpoint there.", err=True)
                continue
            line = f"{job.progress:>4.0%} {job.progress_message or job.status.value}"
            if line != shown and not job.terminal:
                click.echo(f"\r{line[:110]:<110}", nl=False, err=True)
                shown = line
            if job.terminal:
                break
    if shown:
        click.echo("", err=True)
    return training.get_training_run(services, actor, run.id)


def _evaluations(services: Any, actor: Any, run_id: int) -> None:
    """Wait for the checkpoints' evaluation jobs (a batch worker here if no live one serves batch)."""
    from app.cli_edit import _wait_served
    from jobs.services.training import evaluation_jobs

    pending = evaluation_jobs(services, actor, run_id, unfinished=True)
    if pending:
        click.echo(f"Evaluating {len(pending)} checkpoint run(s) on the val split…", err=True)
    started = time.monotonic()
    for job_id in dict.fromkeys(pending):
        _wait_served(services, job_id, "batch", timeout_s=None)
    if pending:
        click.echo(f"Evaluated in {time.monotonic() - started:.0f} s.", err=True)


def _table(checkpoints: list[Any]) -> str:
    """One line per checkpoint: step, loss, and valid / exact / F1 for constrained and free decoding."""
    from jobs.services.evaluations import format_metric

    if not checkpoints:
        return "No checkpoint was stored."
    head = ["step", "loss"] + [f"{label} {kind}" for kind in ("constrained", "free") for _, label in _COLUMNS]
    lines = ["  ".join(f"{h:>17}" if i > 1 else f"{h:>6}" for i, h in enumerate(head))]
    for c in checkpoints:
        cells = [f"{c.step:>6}", f"{c.loss:>6.4f}" if c.loss is not None else f"{'—':>6}"]
        for kind in ("constrained", "free"):
            run = c.evaluations.get(kind)
            for metric, _ in _COLUMNS:
                value = (run.metrics.get("scalars", {}).get(metric) if run is not None and run.metrics else None)
                cells.append(f"{format_metric(metric, value):>17}")
        lines.append("  ".join(cells) + (f"  ← {c.planner_name}" if c.planner_name else ""))
    return "\n".join(lines)
