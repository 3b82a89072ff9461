"""The ``segment`` job (interactive lane): label an uploaded image, or read its labels from the cache.

Payload: ``image_id`` (int) and optionally ``segmenter`` (path of an ONNX segmenter;
default CHATEDIT_SEGMENTER). Result: ``segmentation_id``, ``labels`` (present, in label-id
order), ``shares`` (label → fraction of the image) and ``cached``. Bad input and a missing
or broken segmenter fail the job for good: another attempt cannot fix them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.segmentation import SegmenterError
from jobs.context import JobContext
from jobs.errors import PermanentError
from jobs.images import ImageNotFound
from jobs.segmentation import SegmenterNotConfigured, segment_image


def handle(ctx: JobContext) -> dict[str, Any]:
    image_id, segmenter = _read_payload(ctx.payload)
    ctx.progress(0.0, "segmenting")
    try:
        record = segment_image(ctx.services, image_id, segmenter)
    except (SegmenterNotConfigured, SegmenterError, ImageNotFound) as exc:
        raise PermanentError(str(exc)) from None
    ctx.progress(1.0, "cached" if record.cached else "segmented")
    return {"segmentation_id": record.segmentation_id, "labels": list(record.present),
            "shares": {name: round(share, 6) for name, share in record.shares.items()}, "cached": record.cached,
            "model_id": record.model_id}


def _read_payload(payload: dict[str, Any]) -> tuple[int, Path | None]:
    image_id = payload.get("image_id")
    if isinstance(image_id, bool) or not isinstance(image_id, int):
        raise PermanentError(f"A segment job needs an integer image_id, got {image_id!r}.")
    segmenter = payload.get("segmenter")
    if segmenter is not None and (not isinstance(segmenter, str) or not segmenter.strip()):
        raise PermanentError(f"The segmenter must be a path to an ONNX file, got {segmenter!r}.")
    return image_id, None if segmenter is None else Path(segmenter)
