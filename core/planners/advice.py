"""Advice: a vision model looks at the photo and suggests edits (the thesis' GPT-4V "Advise" button).

The model (``CHATEDIT_VISION_MODEL`` on the same OpenAI-compatible server as the planner)
gets the image downscaled to at most :data:`MAX_SIDE` pixels, the image's labels (the
planner's system prompt and labels turn) and a request for suggestions; its suggestions
come back as ``advice`` commands (shown, never run) next to executable commands the
person can pick, all validated against the contract and the labels like any planner's.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from core.planners.base import Language, PlannerUnavailable, PlanResult
from core.planners.messages import build_messages

if TYPE_CHECKING:
    from core.settings import Settings

#: Longest side of the image sent to the model: enough to judge a photo, small enough to be cheap (one 768 px tile).
MAX_SIDE = 768
JPEG_QUALITY = 85
ADVICE_REQUEST = {
    "en": ("Look at this photo and suggest how to make it better: two to four short suggestions, and the commands "
           "that carry out the ones the commands can do."),
    "zh": "请看这张照片，给出两到四条简短的改进建议，并给出能用命令完成的建议对应的命令。",
}


class AdviceImageError(ValueError):
    """The image given for advice is not a readable PNG."""


def image_data_url(image_png: bytes, max_side: int = MAX_SIDE) -> str:
    """The image as a JPEG ``data:`` URL, downscaled so its longest side is at most ``max_side``."""
    try:
        image = Image.open(io.BytesIO(image_png), formats=["PNG"])
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise AdviceImageError(f"The image for advice is not a readable PNG ({exc}).") from None
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def advice_messages(image_png: bytes, labels: Sequence[str], language: Language) -> list[dict[str, Any]]:
    """The planner's messages with the advice request as the last turn, the image attached to it."""
    request = ADVICE_REQUEST[language]
    messages: list[dict[str, Any]] = list(build_messages(request, labels, language=language))
    messages[-1] = {"role": "user", "content": [
        {"type": "text", "text": request},
        {"type": "image_url", "image_url": {"url": image_data_url(image_png), "detail": "low"}},
    ]}
    return messages


def advise(image_png: bytes, labels: Sequence[str], settings: Settings, language: Language = "en") -> PlanResult:
    """Suggestions for this image as ``advice`` commands plus executable commands, validated against ``labels``.

    Raises :class:`PlannerUnavailable` naming ``CHATEDIT_VISION_MODEL`` when no vision model
    is configured, :class:`core.planners.openai_planner.PlanningError` when the server gives
    no usable answer, and :class:`AdviceImageError` when ``image_png`` is not a PNG.
    """
    if not settings.vision_model:
        raise PlannerUnavailable("Advice needs a vision model: set CHATEDIT_VISION_MODEL (e.g. gpt-4o-mini, or a "
                                 "vision model your OpenAI-compatible server serves).")
    from core.planners.openai_planner import OpenAIPlanner

    planner = OpenAIPlanner.from_settings(settings, model=settings.vision_model)
    messages = advice_messages(image_png, labels, language)
    return planner.complete(messages, labels=labels, language=language, request=ADVICE_REQUEST[language], advice=True)
