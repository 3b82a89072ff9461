"""The ``edit`` job: run the commands a person picked on an image and record the result as a step.

Stages, in order: read the request; load the image; find its labels (the segmenter's
label map, cached per image and model, and the person's selection); validate the
commands against those labels; merge and order them; check a backend can run each
one (before doing any work); run them with progress and cancel checks (per diffusion
step for generative commands); store the output PNG with its recipe (models, seeds,
schedulers, LoRAs) under the PNG text key ``chatedit``, once per job even when the job
runs again; add the history step. Timings go in the job's result.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from core.commands import Command, execution_plan, resolve_params
from core.describe import describe
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
from core.segmentation.default_segmenter import segmenter_in_use
from db.blobs import BlobNotFound
from jobs.context import JobContext
from jobs.edits import EditPayload, EditRequest, InvalidEdit, check_memory_fits, validated_commands
from jobs.errors import JobInterrupted, PermanentError
from jobs.histories import record_step
from jobs.images import encode_png, get_image, image_rgb, make_previews, store_job_image, working_rgb


def handle(ctx: JobContext) -> dict[str, Any]:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    rules = load_rules()
    services = ctx.services

    # 1. Read the request (checked again: the row may come from elsewhere; who asked is the job's owner).
    request = EditRequest.from_checked(EditPayload.of(ctx), user_id=ctx.job.owner_id)
    source = get_image(services, request.image_id)
    try:
        check_memory_fits(services.settings, source.width, source.height, request.commands)  # before the pixels
    except InvalidEdit as exc:
        raise PermanentError(str(exc)) from None
    image = image_rgb(services, request.image_id)
    timings["load_s"] = time.perf_counter() - started
    ctx.progress(0.05, "The image is loaded.")

    # 2. What the targets can be: segmentation labels and the person's selection.
    mark = time.perf_counter()
    regions, labels, segmenter_id = _regions(ctx, request, image)
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
        check_runnable(runnable, rules, services.settings, classical_only=classical_only)
    except NeedsGenerativeBackend as exc:
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
        ctx.progress(span[0] + span[1], f"Done: {_summary(command)}.")

    # 5. Store the result with its recipe, and the step.
    mark = time.perf_counter()
    recipe = Recipe(
        job_id=ctx.job.id, source_image_id=source.id, source_sha256=source.sha256,
        commands=[c.to_wire() for c in runnable], advice=[c.to_wire() for c in advice], params=params,
        backend=_backend(generation, len(runnable)), seed=next((g["seed"] for g in generation if g["seed"] is not None), None),
        segmenter=segmenter_id, labels=sorted(labels), notes=notes,
        generation=[{k: v for k, v in g.items() if k != "timings"} for g in generation],
    )
    # The recipe says what was run, never how long it took (that is the job's result), so a
    # re-run makes the same bytes; the image is stored once per job either way.
    png = encode_png(image, text={RECIPE_KEY: recipe.to_json()})
    stored = store_job_image(services, ctx.job.id, png, width=image.shape[1], height=image.shape[0],
                             user_id=request.user_id)
    # The page shows a preview, never the full image: make it now, from the pixels at hand (unless an
    # earlier run of this job stored other pixels as its image).
    make_previews(services, stored.id, full=image if stored.sha256 == hashlib.sha256(png).hexdigest() else None)
    step_id = None
    if request.history_id is not None:
        step_id = record_step(
            services, history_id=request.history_id, parent_id=request.parent_step_id, image_id=stored.id,
            commands=recipe.commands,
            params={"params": params, "backend": recipe.backend, "notes": notes, "generation": generation,
                    "selection_key": request.selection_key, "segmenter": segmenter_id,
                    "labels": sorted(labels)},
            job_id=ctx.job.id, user_id=request.user_id,
        )
    timings["store_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    ctx.progress(1.0, "Finished: the result is stored.")
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
            ctx.progress(start + width * fraction, f"{label}: {round(100 * fraction)}% of the diffusion steps.")
        except JobInterrupted:
            pass  # the pipeline sees should_stop at this very step and interrupts itself

    hooks = StepHooks(on_progress=on_progress, should_stop=lambda: ctx.should_stop, on_preview=ctx.preview)
    try:
        return run_generative(image, command, regions, params, settings=ctx.services.settings, hooks=hooks)
    except GenerationInterrupted as exc:
        ctx.check()  # raises the job's own stop (cancelled, shutting down, lease lost)
        raise PermanentError(str(exc)) from None


def _backend(generation: list[dict[str, Any]], commands: int) -> str:
    """'classical', a generative backend's name, or names joined with '+' when the runs were mixed."""
    names = [g["backend"] for g in generation] + ["classical"] * (commands - len(generation))
    return "+".join(dict.fromkeys(names))


def _regions(ctx: JobContext, request: EditRequest, image: np.ndarray) -> tuple[Regions, list[str], str | None]:
    """Masks sources and the labels this image has; segmentation runs (or is read from cache) only when configured.

    The selection is scaled to the image here; a label map stays at the working copy's size
    (where the segmenter ran) and ``Regions`` scales each mask made from it to the image.
    """
    services = ctx.services
    shape = image.shape[:2]
    selection = None
    labels: list[str] = []
    if request.selection_key is not None:
        try:
            selection = mask_from_png(services.blobs.get(request.selection_key), shape)
        except InvalidMask as exc:
            raise PermanentError(f"The selection cannot be used: {exc}") from None
        except BlobNotFound:
            raise PermanentError("The selection cannot be used: its mask is no longer stored.") from None
        labels.append(load_rules().selection_label)
    segmenter = segmenter_in_use(services.settings)  # the worker's own: a payload never names a file
    if segmenter is None:
        return Regions(shape=shape, selection=selection), labels, None
    from jobs.segmentation import SegmenterNotConfigured, segment_image

    ctx.progress(0.05, "Finding the parts of the image…")
    working_rgb(services, request.image_id, full=image)  # a segmenter that runs now uses it: no second decode
    try:
        segmentation = segment_image(services, request.image_id, segmenter)
    except (SegmenterNotConfigured, FileNotFoundError, ValueError) as exc:
        raise PermanentError(str(exc)) from None
    labels.extend(segmentation.present)
    regions = Regions(shape=shape, label_map=segmentation.label_map, label_names=segmentation.label_names,
                      selection=selection)
    return regions, labels, segmentation.model_id


def _summary(command: Command) -> str:
    """The command as a person reads it, for the progress line."""
    return describe(command.to_wire())
