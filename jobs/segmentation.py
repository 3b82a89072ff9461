"""Label maps cached per (image, model): the same image is never segmented twice by the same model.

An image row stands for one sha256 (``jobs.images`` stores equal bytes once), so the key
(image id, model id) is the key (image sha256, model id). The label map is a blob (a PNG
that carries its label names), the row lists the labels present. Within a process,
concurrent requests for the same key wait for one inference; across processes, the
unique constraint picks one row and the loser reads the winner's.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core.segmentation import (
    decode_label_map,
    encode_label_map,
    load_segmenter,
    read_metadata,
)
from core.segmentation.default_segmenter import segmenter_in_use
from db.models import Segmentation
from jobs.images import get_image, working_rgb
from jobs.services import Services

log = logging.getLogger(__name__)

#: The job kind that finds an image's parts on a worker (``jobs.handlers.segment``).
SEGMENT_KIND = "segment"


class SegmenterNotConfigured(ValueError):
    """Segmentation was asked for but no segmenter is set."""

    def __init__(self) -> None:
        super().__init__("No segmenter is configured; install the embedded one with `chatedit models install-default` "
                         "or set CHATEDIT_SEGMENTER to an ONNX file made by `chatedit models export-segmenter`, or "
                         "select regions with clicks and the brush.")


class SegmentationNotFound(LookupError):
    def __init__(self, segmentation_id: int) -> None:
        super().__init__(f"There is no segmentation {segmentation_id}.")
        self.segmentation_id = segmentation_id

    def __str__(self) -> str:  # LookupError would print the repr
        return str(self.args[0])


@dataclass(frozen=True)
class SegmentationRecord:
    """An image's label map with its labels; ``label_names[i]`` names id ``i`` of ``label_map``."""

    label_map: np.ndarray
    label_names: tuple[str, ...]
    present: tuple[str, ...]
    shares: dict[str, float]
    model_id: str
    segmentation_id: int
    cached: bool
    image_id: int
    #: What the segmenter could not label and why; only when it ran for this call (not stored with the label map).
    notes: tuple[str, ...] = ()


# One lock per (image, model) being computed in this process: a second request waits and reads the cache.
_inflight: dict[tuple[int, str], threading.Lock] = {}
_inflight_guard = threading.Lock()


def segment_image(services: Services, image_id: int, segmenter_path: Path | None = None) -> SegmentationRecord:
    """The image's segmentation by this segmenter (default: the one this process uses), cached or computed once."""
    path = segmenter_path if segmenter_path is not None else segmenter_in_use(services.settings)
    if path is None:
        raise SegmenterNotConfigured()
    model_id = read_metadata(path).model_id
    found = _find(services, image_id, model_id)
    if found is not None:
        return _record(services, found, cached=True)
    key = (image_id, model_id)
    with _inflight_guard:
        lock = _inflight.setdefault(key, threading.Lock())
    try:
        with lock:
            found = _find(services, image_id, model_id)
            if found is not None:
                return _record(services, found, cached=True)
            return _compute(services, image_id, Path(path))
    finally:
        with _inflight_guard:
            if _inflight.get(key) is lock and not lock.locked():
                del _inflight[key]


def submit_segmentation(services: Services, image_id: int, *, user_id: int) -> int:
    """Queue the interactive `segment` job for this image, owned by ``user_id`` (the queue refuses a person
    without ``jobs.submit``); a worker serves it from the cache when the image was segmented before."""
    return services.queue.enqueue(SEGMENT_KIND, {"image_id": image_id}, lane="interactive", priority=20,
                                  owner_id=user_id)


def load_segmentation(services: Services, segmentation_id: int) -> SegmentationRecord:
    """A stored segmentation by id (what a job result or a history step refers to)."""
    with services.database.session() as session:
        row = session.get(Segmentation, segmentation_id)
    if row is None:
        raise SegmentationNotFound(segmentation_id)
    return _record(services, row, cached=True)


def find_segmentation(services: Services, image_id: int, model_id: str) -> SegmentationRecord | None:
    """The cached segmentation of an image by a model, without running anything."""
    row = _find(services, image_id, model_id)
    return None if row is None else _record(services, row, cached=True)


def _find(services: Services, image_id: int, model_id: str) -> Segmentation | None:
    with services.database.session() as session:
        return session.exec(select(Segmentation).where(Segmentation.image_id == image_id,
                                                       Segmentation.model_id == model_id)).first()


def _compute(services: Services, image_id: int, path: Path) -> SegmentationRecord:
    get_image(services, image_id)  # raises ImageNotFound before any model is loaded
    segmenter = load_segmenter(path)
    result = segmenter.segment(working_rgb(services, image_id))  # label maps are at the working copy's size
    key = services.blobs.put(encode_label_map(result.label_map, result.label_names))
    labels = result.label_entries()
    row = Segmentation(image_id=image_id, model_id=segmenter.model_id, label_map_key=key, labels=labels)
    try:
        with services.database.write_session() as session:
            session.add(row)
    except IntegrityError:  # another process stored this image's segmentation a moment ago
        winner = _find(services, image_id, segmenter.model_id)
        if winner is None:
            raise
        log.info("image %d was segmented by %s elsewhere at the same time; using that one", image_id,
                 segmenter.model_id)
        return _record(services, winner, cached=False)
    assert row.id is not None
    log.info("segmented image %d with %s: %s", image_id, segmenter.model_id, ", ".join(result.present))
    return SegmentationRecord(label_map=result.label_map, label_names=result.label_names, present=result.present,
                              shares={entry["name"]: entry["share"] for entry in labels},
                              model_id=segmenter.model_id, segmentation_id=row.id, cached=False, image_id=image_id,
                              notes=result.notes)


def _record(services: Services, row: Segmentation, *, cached: bool) -> SegmentationRecord:
    label_map, label_names = decode_label_map(services.blobs.get(row.label_map_key))
    assert row.id is not None
    present = tuple(entry["name"] for entry in row.labels)
    shares = {entry["name"]: float(entry["share"]) for entry in row.labels}
    return SegmentationRecord(label_map=label_map, label_names=label_names, present=present, shares=shares,
                              model_id=row.model_id, segmentation_id=row.id, cached=cached, image_id=row.image_id)
