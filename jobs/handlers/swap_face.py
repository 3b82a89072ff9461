"""The ``swap_face`` job: the largest face of one image onto the largest face of another (the thesis' roop).

The result is stored with its recipe and, when a history is given, recorded as a step
of the target image's history, once per job however often the job runs. The rows are
made by the job's owner: the payload never says who asked.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Annotated, Any

from pydantic import Field

from core.generative.errors import GenerationFailed
from core.recipes import RECIPE_KEY, Recipe
from db.models import LOCAL_USER_ID
from jobs.context import JobContext
from jobs.errors import InvalidJobRequest, PermanentError
from jobs.histories import record_step
from jobs.images import encode_png, get_image, image_rgb, make_previews, store_job_image
from jobs.registry import Payload
from jobs.services import Services
from jobs.services.access import require_history_write

SWAP_FACE_KIND = "swap_face"
_Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class SwapFacePayload(Payload):
    source_image_id: _Id
    target_image_id: _Id
    history_id: _Id | None = None
    parent_step_id: _Id | None = None


_SWAPPERS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def submit_swap_face(services: Services, *, source_image_id: int, target_image_id: int, history_id: int | None = None,
                     parent_step_id: int | None = None, user_id: int = LOCAL_USER_ID) -> int:
    """Queue a face swap on the GPU lane for ``user_id``; returns the job id."""
    if not isinstance(source_image_id, int) or not isinstance(target_image_id, int):
        raise InvalidJobRequest("A face swap needs an integer source_image_id and target_image_id.")
    payload = {"source_image_id": source_image_id, "target_image_id": target_image_id, "history_id": history_id,
               "parent_step_id": parent_step_id}
    require_history_write(services, user_id, history_id)
    return services.queue.enqueue(SWAP_FACE_KIND, payload, lane="gpu", owner_id=user_id)


def _swapper(services: Services) -> Any:
    from core.generative.face_swap import FaceSwapper

    settings = services.settings
    key = (str(settings.face_analysis_dir), str(settings.face_swap_model))
    with _LOCK:
        if key not in _SWAPPERS:
            _SWAPPERS[key] = FaceSwapper(settings.face_analysis_dir, settings.face_swap_model)
        return _SWAPPERS[key]


def handle(ctx: JobContext) -> dict[str, Any]:
    started = time.perf_counter()
    payload = SwapFacePayload.of(ctx)
    services = ctx.services
    # 1. Read the request and load both images.
    source_id, target_id = payload.source_image_id, payload.target_image_id
    user_id = ctx.job.owner_id
    target_record = get_image(services, target_id)
    source, target = image_rgb(services, source_id), image_rgb(services, target_id)
    ctx.progress(0.1, "images loaded")
    # 2. Detect, embed, swap.
    try:
        swapper = _swapper(services)
        ctx.progress(0.3, "face models loaded")
        swapped = swapper.swap_largest(source, target)
    except GenerationFailed as exc:
        raise PermanentError(str(exc)) from None
    op_s = time.perf_counter() - started
    # 3. Store with the recipe (what was run, never how long it took: that is the result's), once per
    # job; record the step (once per job too).
    models = {"face_analysis": str(services.settings.face_analysis_dir), "face_swap": str(services.settings.face_swap_model)}
    generation = [{"command": "swap_face", "backend": "onnxruntime", "source_image_id": source_id, "models": models}]
    recipe = Recipe(commands=[], params=[], backend="onnxruntime", seed=None, job_id=ctx.job.id,
                    source_image_id=target_id, source_sha256=target_record.sha256, generation=generation)
    png = encode_png(swapped, text={RECIPE_KEY: recipe.to_json()})
    stored = store_job_image(services, ctx.job.id, png, width=swapped.shape[1], height=swapped.shape[0],
                             user_id=user_id)
    make_previews(services, stored.id, full=swapped if stored.sha256 == hashlib.sha256(png).hexdigest() else None)
    step_id = None
    if payload.history_id is not None:
        step_id = record_step(services, history_id=payload.history_id, parent_id=payload.parent_step_id,
                              image_id=stored.id, commands=[], params={"backend": "onnxruntime", "generation": generation},
                              job_id=ctx.job.id, user_id=user_id)
    ctx.progress(1.0, "done")
    return {"image_id": stored.id, "step_id": step_id, "generation": generation,
            "timings": {"op_s": round(op_s, 4), "total_s": round(time.perf_counter() - started, 4)}}
