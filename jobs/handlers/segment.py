"""The ``segment`` job (interactive lane): label an uploaded image, or read its labels from the cache.

Payload (:class:`SegmentPayload`): ``image_id`` (int) and nothing else. The worker uses its
own segmenter (CHATEDIT_SEGMENTER, else the installed default): a payload never names a
file, so whoever may submit a job cannot make a worker open one. Result:
``segmentation_id``, ``labels`` (present, in label-id order), ``shares`` (label → fraction of
the image), ``cached``, ``model_id`` and ``notes`` (what the segmenter could not label, when
it ran now). Bad input and a missing or broken segmenter fail the job for good: another
attempt cannot fix them.
"""

from __future__ import annotations

from typing import Any

from core.segmentation import SegmenterError
from jobs.context import JobContext
from jobs.errors import PermanentError
from jobs.images import ImageNotFound
from jobs.registry import Payload
from jobs.segmentation import SegmenterNotConfigured, segment_image


class SegmentPayload(Payload):
    image_id: int


def handle(ctx: JobContext) -> dict[str, Any]:
    payload = SegmentPayload.of(ctx)
    ctx.progress(0.0, "segmenting")
    try:
        record = segment_image(ctx.services, payload.image_id)
    except (SegmenterNotConfigured, SegmenterError, ImageNotFound) as exc:
        raise PermanentError(str(exc)) from None
    ctx.progress(1.0, "cached" if record.cached else "segmented")
    return {"segmentation_id": record.segmentation_id, "labels": list(record.present),
            "shares": {name: round(share, 6) for name, share in record.shares.items()}, "cached": record.cached,
            "model_id": record.model_id, "notes": list(record.notes)}
