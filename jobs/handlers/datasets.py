"""The dataset studio's batch jobs: ``dataset_import``, ``dataset_generate`` and ``dataset_harvest``.

Each makes one new version of the named dataset (through ``jobs.services.datasets``), reports
progress as it goes and stops at the next row batch when cancelled, keeping nothing half made.
An import reads its file from the blob store (a payload names a blob, never a path). The job
acts for its owner: the permission check is the same as at the page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from jobs.errors import PermanentError
from jobs.registry import Payload

if TYPE_CHECKING:
    from jobs.context import JobContext

NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
#: Most rows one generation job makes (templates and LLM together).
MAX_GENERATED = 200_000


class DatasetImportPayload(Payload):
    name: NAME
    format: Literal["seed", "alpaca", "sharegpt", "openai"]
    blob_key: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    file_name: Annotated[str, Field(max_length=200)] = ""
    keep_invalid: bool = False
    #: Draw train/val/test with this seed (None: leave the version unsplit).
    split_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = 0


class DatasetGeneratePayload(Payload):
    name: NAME
    templates: Annotated[int, Field(ge=0, le=MAX_GENERATED)] = 0
    llm: Annotated[int, Field(ge=0, le=MAX_GENERATED)] = 0
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    languages: Annotated[list[Literal["en", "zh"]], Field(min_length=1, max_length=2)] = ["en", "zh"]
    llm_mode: Literal["write", "paraphrase"] = "paraphrase"
    split_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = 0


class DatasetHarvestPayload(Payload):
    name: NAME


def _owner(ctx: JobContext):  # type: ignore[no-untyped-def]
    from jobs.services.permissions import actor_for

    return actor_for(ctx.services, ctx.job.owner_id)


def handle_import(ctx: JobContext) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    from finetune.dataset_formats import DatasetFormatError, read_rows
    from jobs.services import datasets

    payload = DatasetImportPayload.of(ctx)
    actor = _owner(ctx)
    ctx.progress(0.05, "Reading the file…")
    data = ctx.services.blobs.get(payload.blob_key)
    suffix = Path(payload.file_name).suffix or (".jsonl" if payload.format == "openai" else ".json")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            result = read_rows(path, payload.format, keep_invalid=payload.keep_invalid,
                               file_name=payload.file_name or None)
        except DatasetFormatError as exc:
            raise PermanentError(str(exc)) from None
    ctx.progress(0.8, f"{len(result.rows)} rows read; storing a new version…")
    what = payload.file_name or "an upload"
    version = datasets.extend(ctx.services, actor, payload.name, result.rows, job_id=ctx.job.id,
                              split_seed=payload.split_seed,
                              note=f"Imported {what} ({payload.format} format)"
                                   + (f"; {len(result.rejected)} rows left out" if result.rejected else ""),
                              stats={"rejected": len(result.rejected)})
    ctx.progress(1.0, f"Version {version.number} of {payload.name} has {version.row_count} rows.")
    return {"dataset": payload.name, "version": version.number, "rows": len(result.rows),
            "rejected": [{"index": i, "reason": reason} for i, reason, _raw in result.rejected[:1000]],
            "rejected_count": len(result.rejected)}


def handle_generate(ctx: JobContext) -> dict[str, Any]:
    from finetune.dataset_checks import check_row
    from finetune.templates import generate_template_rows
    from jobs.services import datasets

    payload = DatasetGeneratePayload.of(ctx)
    if payload.templates + payload.llm == 0:
        raise PermanentError("Ask for some rows: templates, LLM rows or both.")
    if payload.templates + payload.llm > MAX_GENERATED:
        raise PermanentError(f"One generation makes at most {MAX_GENERATED:,} rows.")
    actor = _owner(ctx)
    rows = []
    stats: dict[str, Any] = {}
    share = payload.templates / (payload.templates + payload.llm)
    if payload.templates:
        ctx.progress(0.01, f"Writing {payload.templates:,} template rows…")
        made = generate_template_rows(payload.templates, seed=payload.seed, languages=tuple(payload.languages))
        for start in range(0, len(made), 500):
            rows += [check_row(r) for r in made[start:start + 500]]
            ctx.progress(share * 0.9 * len(rows) / len(made), f"{len(rows):,} of {len(made):,} template rows checked")
    if payload.llm:
        from finetune.llm_generation import GenerationFailed, generate_llm_rows

        sources = generate_template_rows(payload.llm, seed=payload.seed + 1, languages=tuple(payload.languages))

        def progress(done: int, total: int) -> None:
            ctx.progress(share * 0.9 + (1 - share) * 0.9 * done / max(total, 1), f"{done} of {total} LLM rows")

        try:
            made_llm = generate_llm_rows(ctx.services.settings, sources, mode=payload.llm_mode, seed=payload.seed,
                                         on_progress=progress, should_stop=lambda: ctx.should_stop)
        except GenerationFailed as exc:
            raise PermanentError(str(exc)) from None
        ctx.check()
        rows += list(made_llm.rows) + [row.with_checks(llm=reason) for row, reason in made_llm.rejected]
        stats.update(prompt_tokens=made_llm.prompt_tokens, completion_tokens=made_llm.completion_tokens,
                     llm_requests=made_llm.requests, llm_rejected=len(made_llm.rejected))
    ctx.progress(0.95, "Storing a new version…")
    parts = [f"{payload.templates:,} template rows" if payload.templates else "",
             f"{payload.llm:,} LLM rows ({payload.llm_mode})" if payload.llm else ""]
    version = datasets.extend(ctx.services, actor, payload.name, rows, job_id=ctx.job.id, stats=stats,
                              split_seed=payload.split_seed,
                              note=f"Generated {' and '.join(p for p in parts if p)} with seed {payload.seed}")
    ctx.progress(1.0, f"Version {version.number} of {payload.name} has {version.row_count} rows.")
    return {"dataset": payload.name, "version": version.number, "rows": len(rows),
            "aside": sum(1 for r in rows if not r.passed), **stats}


def handle_harvest(ctx: JobContext) -> dict[str, Any]:
    from finetune.dataset_checks import check_row
    from finetune.dataset_rows import DatasetRow
    from jobs.services import datasets, reviews

    payload = DatasetHarvestPayload.of(ctx)
    actor = _owner(ctx)
    ctx.progress(0.1, "Reading the approved steps…")
    examples = reviews.training_examples(ctx.services, actor)
    if not examples:
        raise PermanentError("No step has been approved in review yet: there is nothing to harvest.")
    from core.planners.base import detect_language

    try:  # a step harvested before is not added again
        known = {s.row.origin for s in datasets.version_rows(ctx.services, actor, payload.name)}
    except datasets.DatasetNotFound:
        known = set()
    rows = [check_row(DatasetRow(request=e.request, language=detect_language(e.request), labels=tuple(e.labels),
                                 commands=tuple(e.commands), source="review", origin=f"step:{e.step_id}"))
            for e in examples if f"step:{e.step_id}" not in known]
    if not rows:
        raise PermanentError(f"Every approved step is in {payload.name} already: there is nothing new to harvest.")
    ctx.progress(0.8, f"{len(rows)} approved steps; storing a new version…")
    version = datasets.extend(ctx.services, actor, payload.name, rows, job_id=ctx.job.id,
                              note=f"Harvested {len(rows)} step{'s' if len(rows) != 1 else ''} approved in review")
    ctx.progress(1.0, f"Version {version.number} of {payload.name} has {version.row_count} rows.")
    return {"dataset": payload.name, "version": version.number, "rows": len(rows)}
