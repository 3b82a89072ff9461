"""The ``eval_run`` job: a planner on a dataset version's split, every example scored and kept.

Payload (:class:`EvalRunPayload`): ``planner`` (rules, reference, openai, local), ``dataset``
(``NAME@N``, resolved in the database: a payload never names a file), ``split``, ``limit``,
``constrained`` (local only), ``model`` (openai only), ``checkpoint`` (local only: a fine-tuning checkpoint,
its run's base model with its adapter), ``batch_size``. The local planner answers a
batch of requests that share a label set in one decode; the others answer one by one. Examples are
stored as each batch finishes, so a cancelled run keeps what it scored (status ``cancelled``), and
a run that is started again (a retried job) starts over on its own row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import Field

from jobs.errors import PermanentError
from jobs.registry import Payload

if TYPE_CHECKING:
    from finetune.dataset_rows import DatasetRow
    from jobs.context import JobContext

#: Examples stored per write (and the most a progress report lags behind).
_STORE_EVERY = 32


class EvalRunPayload(Payload):
    planner: Literal["rules", "reference", "openai", "local"]
    dataset: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}@\d+$")]
    split: Literal["train", "val", "test"] | None = "test"
    limit: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    constrained: bool | None = None
    model: Annotated[str, Field(max_length=200)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=64)] = 8
    checkpoint: Annotated[int, Field(ge=1)] | None = None


def handle(ctx: JobContext) -> dict[str, Any]:
    from db.models import EvalExample, EvalRun
    from db.types import utcnow
    from finetune.metrics import aggregate
    from jobs.errors import JobCancelled
    from jobs.services import datasets
    from jobs.services.permissions import actor_for

    payload = EvalRunPayload.of(ctx)
    services = ctx.services
    actor = actor_for(services, ctx.job.owner_id)
    name, number = datasets.parse_spec(payload.dataset)
    rows = [r for r in datasets.usable_rows(services, actor, name, number)
            if payload.split is None or r.split == payload.split]
    # A row an admin kept although its expected commands break the contract cannot be scored against.
    unscorable = sum(1 for r in rows if r.checks.get("contract", True) is not True)
    rows = [r for r in rows if r.checks.get("contract", True) is True]
    if payload.split is not None and not rows:
        raise PermanentError(f"{payload.dataset} has no {payload.split} split: split it first (the Datasets page, "
                             f"or `chatedit datasets split {name}`).")
    rows = rows[: payload.limit] if payload.limit else rows
    if not rows:
        raise PermanentError(f"{payload.dataset} has no rows to evaluate.")
    answer, detail = _answerer(ctx, payload)
    run_id = _start_run(ctx, payload, detail, len(rows))
    scores = []
    started = time.perf_counter()
    done = 0
    status = "failed"
    try:
        for batch in _batches(rows, payload.batch_size if payload.planner == "local" else _STORE_EVERY):
            ctx.check()
            results = answer(batch)
            records = []
            for row, (reply, produced, latency, tokens) in zip(batch, results, strict=True):
                score = _score(row, reply, produced, latency, tokens)
                scores.append(score)
                records.append({"run_id": run_id, "position": done, "request": row.request,
                                "language": row.language, "labels": list(row.labels),
                                "expected": [dict(c) for c in row.commands], "reply": reply, "produced": produced,
                                "score": score.to_dict()})
                done += 1
            with services.database.write_session() as session:
                session.execute(sa.insert(EvalExample.__table__), records)  # type: ignore[attr-defined]
            ctx.progress(done / len(rows), f"{done} of {len(rows)} examples")
        status = "succeeded"
    except JobCancelled:
        status = "cancelled"
        raise
    finally:
        wall = time.perf_counter() - started
        metrics = aggregate(scores).to_dict() if scores else {}
        timings = {"wall_s": round(wall, 3), "examples_per_s": round(done / wall, 3) if wall > 0 else None,
                   "batch_size": payload.batch_size if payload.planner == "local" else 1}
        with services.database.write_session() as session:
            run = session.get(EvalRun, run_id)
            assert run is not None
            run.status, run.metrics, run.timings, run.example_count = status, metrics, timings, done
            run.finished_at = utcnow()
            session.add(run)
    return {"run_id": run_id, "examples": done, "unscorable": unscorable, "metrics": metrics}


def _start_run(ctx: JobContext, payload: EvalRunPayload, detail: dict[str, Any], count: int) -> int:
    """The run's row for this job (made once; a job run again clears what its earlier attempt stored)."""
    from sqlmodel import select

    from db.models import EvalExample, EvalRun

    with ctx.services.database.write_session() as session:
        run = session.exec(select(EvalRun).where(EvalRun.job_id == ctx.job.id)).first()
        if run is None:
            run = EvalRun(planner=payload.planner, planner_detail=detail, constrained=payload.constrained,
                          dataset=payload.dataset, split=payload.split, example_count=0, job_id=ctx.job.id,
                          created_by=ctx.job.owner_id)
            session.add(run)
            session.flush()
        else:
            session.execute(sa.delete(EvalExample.__table__).where(  # type: ignore[attr-defined]
                EvalExample.__table__.c.run_id == run.id))  # type: ignore[attr-defined]
            run.status, run.metrics, run.example_count = "running", {}, 0
        assert run.id is not None
        return run.id


Answer = tuple[str | None, list[Any] | None, float, int | None]


def _answerer(ctx: JobContext, payload: EvalRunPayload):  # type: ignore[no-untyped-def]
    """A function from a batch of rows to (reply, parsed commands, latency s, tokens) each, and what ran."""
    from core.commands import CommandsNotFound, extract_commands
    from core.planners import PlannerUnavailable, make_planner
    from core.planners.base import ChatTurn
    from finetune.metrics import produced_items

    settings = ctx.services.settings

    def parsed(text: str | None) -> list[Any] | None:
        if text is None:
            return None
        try:
            return extract_commands(text)
        except CommandsNotFound:
            return None

    def turns(row: DatasetRow) -> list[ChatTurn]:
        return [ChatTurn(role, text) for user, assistant in row.conversation
                for role, text in (("user", user), ("assistant", assistant))]

    if payload.planner == "reference":
        def reference(batch: Sequence[DatasetRow]) -> list[Answer]:
            return [(json.dumps([dict(c) for c in r.commands], ensure_ascii=False), [dict(c) for c in r.commands],
                     0.0, None) for r in batch]
        return reference, {}
    detail: dict[str, Any] = {}
    try:
        if payload.checkpoint is not None:
            from jobs.planner_models import local_planner
            from jobs.services.training import TrainingError, checkpoint_source

            try:
                base, adapter_key, run_id, step = checkpoint_source(ctx.services, payload.checkpoint)
            except TrainingError as exc:
                raise PermanentError(str(exc)) from None
            planner = local_planner(ctx.services, base, adapter_key)
            detail = {"checkpoint": payload.checkpoint, "training_run": run_id, "step": step}
        else:
            planner = make_planner(payload.planner, settings, model=payload.model)
    except PlannerUnavailable as exc:
        raise PermanentError(str(exc)) from None
    if payload.planner == "local":
        constrained = True if payload.constrained is None else payload.constrained

        def local(batch: Sequence[DatasetRow]) -> list[Answer]:
            answers: list[Answer | None] = [None] * len(batch)
            groups: dict[tuple[str, ...], list[int]] = {}
            for i, row in enumerate(batch):
                groups.setdefault(tuple(row.labels), []).append(i)
            for labels, indexes in groups.items():
                prompts = [planner.prompt(batch[i].request, labels, turns(batch[i])) for i in indexes]
                mark = time.perf_counter()
                generations = planner.generate(prompts, labels, constrained=constrained)
                each = (time.perf_counter() - mark) / len(indexes)
                for i, generation in zip(indexes, generations, strict=True):
                    answers[i] = (generation.text, parsed(generation.text), each, generation.tokens)
            return [a for a in answers if a is not None]

        return local, {"model": getattr(planner, "model_id", ""), "adapter": getattr(planner, "adapter", None), **detail}

    def one_by_one(batch: Sequence[DatasetRow]) -> list[Answer]:
        answers: list[Answer] = []
        for row in batch:
            mark = time.perf_counter()
            result = planner.plan(row.request, labels=list(row.labels), conversation=turns(row))
            latency = time.perf_counter() - mark
            # The planner's own items, rejected ones included, so invalid commands count against it.
            answers.append((result.reply, produced_items(result), latency, None))
        return answers

    detail = {"model": payload.model or settings.openai_model} if payload.planner == "openai" else {}
    return one_by_one, detail


def _score(row: DatasetRow, reply: str | None, produced: list[Any] | None, latency: float, tokens: int | None):  # type: ignore[no-untyped-def]
    from finetune.metrics import score_example

    return score_example([dict(c) for c in row.commands], reply, produced, labels=list(row.labels),
                         language=row.language, latency_s=latency,
                         tokens=None if tokens is None else {"completion": tokens})


def _batches(rows: Sequence[DatasetRow], size: int) -> list[Sequence[DatasetRow]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]
