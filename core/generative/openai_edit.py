"""The OpenAI image-edit fallback (the thesis used DALL-E 2 when its local models could not serve a request).

The images edit endpoint repaints where the mask is transparent, on a square canvas;
the request is built in that format, the answer is resized back to the input's size
and composited inside the feathered mask, so the rest of the image stays exact.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import numpy as np

from core.commands import Command
from core.errors import first_line
from core.generative.compositing import composite, feathered_alpha, resize
from core.generative.errors import GenerationFailed
from core.generative.executors import DEFAULT_REMOVE_PROMPT, GenerativeRun, StepHooks
from core.settings import Settings
from core.text import hide_credentials

DEFAULT_SIDE = 1024


def prompt_for(command: Command) -> str:
    """What the edit endpoint is asked, per command (it takes one prompt for the whole image)."""
    name, paras = command.command, command.paras
    if name == "change":
        return str(paras[1])
    if name == "remove":
        return DEFAULT_REMOVE_PROMPT
    if name == "face":
        return f"the same person, same identity, with the face retouched: {paras[0]}"
    if name == "style":
        return f"the same picture with the same layout, in this style: {paras[0]}"
    return str(paras[0])


def request_images(image: np.ndarray, mask: np.ndarray, side: int) -> tuple[bytes, bytes]:
    """The square RGB PNG and its RGBA mask PNG (alpha 0 = repaint here), as the endpoint wants them."""
    from PIL import Image

    square = resize(image, (side, side))
    alpha = np.where(resize(mask.astype(np.uint8), (side, side), nearest=True) > 0, 0, 255).astype(np.uint8)
    rgba = np.dstack([square, alpha])
    out = []
    for array, mode in ((square, "RGB"), (rgba, "RGBA")):
        buffer = io.BytesIO()
        Image.fromarray(array, mode).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out[0], out[1]


def openai_edit(image: np.ndarray, mask: np.ndarray, prompt: str, params: dict[str, Any], settings: Settings,
                hooks: StepHooks | None = None) -> GenerativeRun:
    """Edit ``image`` inside ``mask`` through the images edit endpoint of the configured OpenAI-compatible API."""
    import openai
    from PIL import Image

    model = settings.openai_image_model
    if not model:
        raise GenerationFailed("The OpenAI image-edit fallback is off; set CHATEDIT_OPENAI_IMAGE_MODEL to enable it.")
    hooks = hooks or StepHooks()
    side = int(params.get("openai_size") or DEFAULT_SIDE)
    started = time.perf_counter()
    image_png, mask_png = request_images(image, mask, side)
    extra: dict[str, Any] = {"response_format": "b64_json"} if model.startswith("dall-e") else {}
    hooks.on_progress(0.0)
    try:
        client = openai.OpenAI(api_key=settings.openai_api_key, base_url=settings.openai_base_url,
                               timeout=settings.openai_timeout_seconds, max_retries=settings.openai_max_retries)
        response = client.images.edit(model=model, image=("image.png", image_png, "image/png"),
                                      mask=("mask.png", mask_png, "image/png"), prompt=prompt, n=1,
                                      size=f"{side}x{side}", **extra)
    except openai.OpenAIError as exc:
        raise GenerationFailed(f"The OpenAI image edit failed: {hide_credentials(first_line(exc))}") from exc
    data = response.data[0] if response.data else None
    if data is None or not data.b64_json:
        raise GenerationFailed("The OpenAI image edit answered without an image (b64_json).")
    with Image.open(io.BytesIO(base64.b64decode(data.b64_json))) as answer:
        generated = np.asarray(answer.convert("RGB"))
    generated = resize(generated, image.shape[:2])
    alpha = feathered_alpha(mask, int(params.get("mask_blur", 4)))
    hooks.on_progress(1.0)
    return GenerativeRun(image=composite(image, generated, alpha), task="edit", model=model, seed=None,
                         scheduler="", steps=0, steps_run=0, backend="openai", op_s=time.perf_counter() - started)
