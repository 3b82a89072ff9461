"""The recipe of an edited image: what was run, with which parameters, by which backend.

It travels inside the PNG (an iTXt chunk under the key ``chatedit``), so a downloaded
step can be understood, and re-run, without the database it came from.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

RECIPE_KEY = "chatedit"
RECIPE_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    commands: list[dict[str, Any]]
    params: list[dict[str, Any]]
    backend: str
    seed: int | None
    job_id: int | None = None
    source_image_id: int | None = None
    source_sha256: str | None = None
    advice: list[dict[str, Any]] = field(default_factory=list)
    segmenter: str | None = None
    labels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: One entry per generative run: command, backend, model, ControlNet, seed, scheduler, steps, LoRAs, timings.
    generation: list[dict[str, Any]] = field(default_factory=list)
    version: int = RECIPE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def read_recipe(png: bytes) -> dict[str, Any] | None:
    """The recipe stored in a PNG by ChatEdit, or None when it has none."""
    with Image.open(io.BytesIO(png)) as image:
        text = getattr(image, "text", {}).get(RECIPE_KEY)
    return None if text is None else json.loads(text)
