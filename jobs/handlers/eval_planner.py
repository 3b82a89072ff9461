"""The ``eval_planner`` job: score a planner on a thesis-format dataset (``chatedit eval planner``, the admin pages).

Payload: ``planner`` ("rules", or "reference" to score the dataset's own outputs against
the contract), ``dataset`` (a path the worker can read), optional ``limit``. The result
is :class:`finetune.evaluation.EvalReport` as a dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.commands import CommandsNotFound, extract_commands
from core.planners import PlannerUnavailable, make_planner
from finetune.evaluation import DatasetError, Sample, evaluate, load_dataset
from jobs.context import JobContext
from jobs.errors import PermanentError


def handle(ctx: JobContext) -> dict[str, Any]:
    payload = ctx.payload
    name = str(payload.get("planner", "rules"))
    dataset = Path(str(payload.get("dataset", "")))
    limit = payload.get("limit")
    try:
        samples = load_dataset(dataset, limit=int(limit) if limit else None)
    except DatasetError as exc:
        raise PermanentError(str(exc)) from None
    if name == "reference":
        def run(sample: Sample) -> tuple[str, list[Any] | None]:
            try:
                return sample.reference, extract_commands(sample.reference)
            except CommandsNotFound:
                return sample.reference, None
    else:
        try:
            planner = make_planner(name)
        except PlannerUnavailable as exc:
            raise PermanentError(str(exc)) from None

        def run(sample: Sample) -> tuple[str, list[Any] | None]:
            result = planner.plan(sample.request, labels=sample.labels)
            return result.reply, result.wire()

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            ctx.progress(done / total, f"{done}/{total} samples")

    report = evaluate(run, samples, planner_name=name, dataset_name=dataset.name, progress=progress)
    return report.to_dict()
