"""The ``generate`` job: txt2img from a prompt, stored as the root of a new edit history.

The thesis let a person start from words instead of a photo; the image is stored like
an upload (with its recipe in the PNG) and becomes the first step of its history. A job
that runs again (at-least-once delivery) keeps the image and the history its first run
stored. The rows are made by the job's owner: the payload never says who asked.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any

from pydantic import Field

from core.generative.errors import GenerationFailed, GenerationInterrupted, ModelNotConfigured
from core.recipes import RECIPE_KEY, Recipe, read_recipe
from core.rules import load_rules
from db.models import LOCAL_USER_ID
from jobs.context import JobContext
from jobs.errors import InvalidJobRequest, JobInterrupted, PermanentError
from jobs.histories import start_history
from jobs.images import encode_png, image_png, make_previews, store_job_image
from jobs.registry import Payload
from jobs.services import Services
from jobs.user_settings import JobSettings

GENERATE_KIND = "generate"
MAX_PROMPT = 500


class GeneratePayload(Payload):
    prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT)]
    user_settings: JobSettings
    title: Annotated[str, Field(max_length=200)] = ""


def submit_generate(services: Services, prompt: str, *, user_settings: dict[str, Any] | None = None,
                    title: str = "", user_id: int = LOCAL_USER_ID, priority: int = 0) -> int:
    """Queue a txt2img job on the GPU lane for ``user_id``; returns the job id."""
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
        raise InvalidJobRequest(f"The prompt must be non-empty text of at most {MAX_PROMPT} characters.")
    payload = {"prompt": prompt, "user_settings": dict(user_settings or {}), "title": title}
    return services.queue.enqueue(GENERATE_KIND, payload, lane="gpu", priority=priority, owner_id=user_id)


def handle(ctx: JobContext) -> dict[str, Any]:
    from core.generative.executors import StepHooks, text_to_image
    from core.generative.registry import shared_registry

    started = time.perf_counter()
    services = ctx.services
    # 1. Read the request; the model must be configured before any work.
    payload = GeneratePayload.of(ctx)
    prompt = payload.prompt
    if not prompt.strip():
        raise PermanentError("This generate job's prompt is blank.")
    if not services.settings.base_model:
        raise PermanentError(str(ModelNotConfigured("CHATEDIT_BASE_MODEL", "'generate' (text to image)")))
    user_id = ctx.job.owner_id
    params = {**load_rules().defaults, **{k: v for k, v in payload.user_settings.items() if v is not None}}

    # 2. Denoise, reporting every step.
    def on_progress(fraction: float) -> None:
        try:
            ctx.progress(0.05 + 0.85 * fraction, f"generating: {round(100 * fraction)}%")
        except JobInterrupted:
            pass

    hooks = StepHooks(on_progress=on_progress, should_stop=lambda: ctx.should_stop, on_preview=ctx.preview)
    try:
        run = text_to_image(shared_registry(services.settings), prompt, params, hooks, lora_dir=services.settings.lora_dir)
    except GenerationInterrupted as exc:
        ctx.check()
        raise PermanentError(str(exc)) from None
    except (GenerationFailed, ValueError) as exc:
        raise PermanentError(f"'generate' could not run: {exc}") from None

    # 3. Store the image with its recipe (what was run, never how long it took: that is the result's),
    # once per job, and start its history, or find the one this job's first run started.
    op_s = time.perf_counter() - started
    generation = [{"command": "generate", "prompt": prompt, **run.record()}]
    recipe = Recipe(commands=[], params=[params], backend=run.backend, seed=run.seed, job_id=ctx.job.id,
                    notes=run.notes, generation=[{k: v for k, v in g.items() if k != "timings"} for g in generation])
    png = encode_png(run.image, text={RECIPE_KEY: recipe.to_json()})
    stored = store_job_image(services, ctx.job.id, png, width=run.image.shape[1], height=run.image.shape[0],
                             user_id=user_id)
    seed = run.seed
    if stored.sha256 == hashlib.sha256(png).hexdigest():
        make_previews(services, stored.id, full=run.image)
    else:  # an earlier run's image is the job's: the result tells what made that one
        kept = read_recipe(image_png(services, stored.id)) or {}
        seed, generation = kept.get("seed", seed), kept.get("generation", generation)
        make_previews(services, stored.id)
    history = start_history(services, stored.id, owner_id=user_id, title=(payload.title or prompt)[:200],
                            job_id=ctx.job.id)
    ctx.progress(1.0, "done")
    return {"image_id": stored.id, "history_id": history.history_id, "root_step_id": history.root_step_id,
            "seed": seed, "generation": generation,
            "timings": {"op_s": round(op_s, 4), "total_s": round(time.perf_counter() - started, 4)}}
