"""The ``edit`` job: run the commands a person picked on an image and record the result as a step.

Stages, in order: read the request; load the image; find its labels (the segmenter's
label map, cached per image and model, and the person's selection); validate the
commands against those labels; merge and order them; check a backend can run each
one (before doing any work); run them with progress and cancel checks (per diffusion
step for generative commands); store the output PNG with its recipe (models, seeds,
schedulers, LoRAs, timings) under the PNG text key ``chatedit``; add the history step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from core.commands import Command, execution_plan, resolve_params
from core.editing import (
    CommandRun,
    NeedsGenerativeBackend,
    Regions,
    check_runnable,
    run_classical,
    run_generative,
    runs_generatively,
)
from core.generative.errors import GenerationFailed, GenerationInterrupted
from core.masks import InvalidMask, MissingSelection, UnknownLabel, mask_from_png
from core.recipes import RECIPE_KEY, Recipe
from core.rules import load_rules
from jobs.context import JobContext
from jobs.edits import EditRequest, InvalidEdit, validated_commands
from jobs.errors import JobInterrupted, PermanentError
from jobs.histories import record_step
from jobs.images import encode_png, get_image, image_rgb, store_encoded


def handle(ctx: JobContext) -> dict[str, Any]:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    rules = load_rules()
    services = ctx.services

    # 1. Read the request and load the image.
    try:
        request = EditRequest.from_payload(ctx.payload)
    except InvalidEdit as exc:
        raise PermanentError(str(exc)) from None
    source = get_image(services, request.image_id)
    image = image_rgb(services, request.image_id)
    timings["load_s"] = time.perf_counter() - started
    ctx.progress(0.05, "image loaded")

    # 2. What the targets can be: segmentation labels and the person's selection.
    mark = time.perf_counter()
    regions, labels, segmenter_id = _regions(ctx, request, image.shape[:2])
    timings["segment_s"] = time.perf_counter() - mark

    # 3. Validate against this image, merge, order, and check every command can run.
    try:
        commands = validated_commands(request.commands, labels, rules)
    except InvalidEdit as exc:
        raise PermanentError(str(exc)) from None
    runnable, advice = execution_plan(commands, rules)
    # The person's "editor_backend": "classical" counts no generative backend as configured.
    classical_only = request.user_settings.get("editor_backend") == "classical"
    backends = None if classical_only else services.settings
    try:
        check_runnable(runnable, rules, backends)
    except NeedsGenerativeBackend as exc:
        if classical_only:
            raise PermanentError(f"'{exc.command}' needs a generative editor, and your Settings choose the classical "
                                 "editor only; set Editor backend to auto in Settings to run it.") from None
        raise PermanentError(str(exc)) from None

    # 4. Run them, reporting progress after each.
    params = [resolve_params(c, user_settings=request.user_settings, rules=rules) for c in runnable]
    notes: list[str] = []
    timings["mask_s"] = timings["op_s"] = 0.0
    generation: list[dict[str, Any]] = []
    for i, (command, command_params) in enumerate(zip(runnable, params, strict=True)):
        ctx.check()
        span = (0.1 + 0.8 * i / len(runnable), 0.8 / len(runnable))
        try:
            if runs_generatively(command, backends, rules):
                run = _run_generative(ctx, image, command, regions, command_params, span)
            else:
                run = run_classical(image, command, regions, command_params, rules)
        except (UnknownLabel, MissingSelection, GenerationFailed, ValueError) as exc:
            raise PermanentError(f"'{command.command}' could not run: {exc}") from None
        image = run.image
        notes.extend(run.notes)
        timings["mask_s"] += run.mask_s
        timings["op_s"] += run.op_s
        if run.generation is not None:
            generation.append(run.generation)
        ctx.progress(span[0] + span[1], f"{_summary(command)} done")

    # 5. Store the result with its recipe, and the step.
    mark = time.perf_counter()
    recipe = Recipe(
        job_id=ctx.job.id, source_image_id=source.id, source_sha256=source.sha256,
        commands=[c.to_wire() for c in runnable], advice=[c.to_wire() for c in advice], params=params,
        backend=_backend(generation, len(runnable)), seed=next((g["seed"] for g in generation if g["seed"] is not None), None),
        segmenter=segmenter_id, labels=sorted(labels), notes=notes,
        timings={k: round(v, 4) for k, v in timings.items()}, generation=generation,
    )
    png = encode_png(image, text={RECIPE_KEY: recipe.to_json()})
    stored = store_encoded(services, png, width=image.shape[1], height=image.shape[0], user_id=request.user_id)
    ctx.save_output("image", png)
    step_id = None
    if request.history_id is not None:
        step_id = record_step(
            services, history_id=request.history_id, parent_id=request.parent_step_id, image_id=stored.id,
            commands=recipe.commands,
            params={"params": params, "backend": recipe.backend, "notes": notes, "generation": generation,
                    "selection_key": request.selection_key, "segmenter": segmenter_id},
            job_id=ctx.job.id, user_id=request.user_id,
        )
    timings["store_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    ctx.progress(1.0, "done")
    return {
        "image_id": stored.id, "step_id": step_id, "commands": recipe.commands, "advice": recipe.advice,
        "notes": notes, "timings": {k: round(v, 4) for k, v in timings.items()}, "generation": generation,
    }


def _run_generative(ctx: JobContext, image: Any, command: Command, regions: Regions, params: dict[str, Any],
                    span: tuple[float, float]) -> CommandRun:
    """A diffusion run that reports each step within ``span`` of the job's progress and stops when the job must."""
    from core.generative.executors import StepHooks

    start, width = span
    label = _summary(command)

    def on_progress(fraction: float) -> None:
        try:
            ctx.progress(start + width * fraction, f"{label}: {round(100 * fraction)}%")
        except JobInterrupted:
            pass  # the pipeline sees should_stop at this very step and interrupts itself

    hooks = StepHooks(on_progress=on_progress, should_stop=lambda: ctx.should_stop)
    try:
        return run_generative(image, command, regions, params, settings=ctx.services.settings, hooks=hooks)
    except GenerationInterrupted as exc:
        ctx.check()  # raises the job's own stop (cancelled, shutting down, lease lost)
        raise PermanentError(str(exc)) from None


def _backend(generation: list[dict[str, Any]], commands: int) -> str:
    """'classical', a generative backend's name, or names joined with '+' when the runs were mixed."""
    names = [g["backend"] for g in generation] + ["classical"] * (commands - len(generation))
    return "+".join(dict.fromkeys(names))


def _regions(ctx: JobContext, request: EditRequest, shape: tuple[int, int]) -> tuple[Regions, list[str], str | None]:
    """Masks sources and the labels this image has; segmentation runs (or is read from cache) only when configured."""
    services = ctx.services
    selection = None
    labels: list[str] = []
    if request.selection_key is not None:
        try:
            selection = mask_from_png(services.blobs.get(request.selection_key), shape)
        except InvalidMask as exc:
            raise PermanentError(f"The selection cannot be used: {exc}") from None
        labels.append(load_rules().selection_label)
    segmenter = request.segmenter or (str(services.settings.segmenter) if services.settings.segmenter else None)
    if segmenter is None:
        return Regions(shape=shape, selection=selection), labels, None
    from jobs.segmentation import SegmenterNotConfigured, segment_image

    ctx.progress(0.05, "segmenting")
    try:
        segmentation = segment_image(services, request.image_id, Path(segmenter))
    except (SegmenterNotConfigured, FileNotFoundError, ValueError) as exc:
        raise PermanentError(str(exc)) from None
    labels.extend(segmentation.present)
    regions = Regions(shape=shape, label_map=segmentation.label_map, label_names=segmentation.label_names,
                      selection=selection)
    return regions, labels, segmentation.model_id


def _summary(command: Command) -> str:
    return f"{command.command} {json.dumps(list(command.to_wire()['paras']), ensure_ascii=False)}"
