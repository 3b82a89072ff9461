"""The base image's parts in the editor: a `segment` job when the segmenter has not seen the image, then chips and an overlay.

The segmenter runs in a worker (ONNX Runtime never loads in the UI process); this
module only reads the segmenter's metadata (its model id, to find a cached label map
at once) and the stored label map. What the page needs is one :class:`PartsState`:
the label map when there is one, or why there is none yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from app.ui.common import watch_job
from core.masks import resize_labels
from core.segmentation import SegmenterError, read_metadata
from core.segmentation.default_segmenter import segmenter_in_use
from core.segmentation.label_maps import voc_palette
from jobs.errors import InvalidJobRequest, JobNotFound
from jobs.queue import JobStatus
from jobs.segmentation import (
    SegmentationNotFound,
    SegmentationRecord,
    find_segmentation,
    load_segmentation,
    submit_segmentation,
)
from jobs.services import Services
from jobs.services.permissions import PermissionDenied

#: Session keys: image id → segment job id; (image id, model id) → SegmentationRecord; the overlay toggle.
JOBS = "segment_jobs"
RECORDS = "segment_records"
SHOW_OVERLAY = "show_parts_overlay"
_PALETTE = np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)


@dataclass(frozen=True)
class PartsState:
    """The parts of one image: ``record`` when found; else ``pending`` (a job runs) or ``problem`` (a sentence)."""

    configured: bool
    record: SegmentationRecord | None = None
    job_id: int | None = None
    problem: str | None = None
    #: Why nothing is being found, when that is no fault (e.g. the person may not start the job): a caption.
    note: str | None = None

    @property
    def pending(self) -> bool:
        return self.record is None and self.job_id is not None and self.problem is None and self.note is None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.record.present if self.record is not None else ()


def configured(services: Services) -> bool:
    """Whether this installation has a segmenter (CHATEDIT_SEGMENTER, or the installed default)."""
    return segmenter_in_use(services.settings) is not None


def model_id_of(services: Services) -> str:
    """The configured segmenter's model id (raises SegmenterError with a sentence when the file is unusable)."""
    path = segmenter_in_use(services.settings)
    assert path is not None
    return read_metadata(path).model_id


def parts_of(services: Services, image_id: int, *, user_id: int, may_submit: bool = True) -> PartsState:
    """This image's parts by the configured segmenter: cached, being computed, or why not (never blocks on a model).

    The `segment` job is ``user_id``'s; someone who may not submit jobs (a viewer) gets what is
    cached, else a note, and no job.
    """
    if not configured(services):
        return PartsState(configured=False)
    try:
        model_id = model_id_of(services)
    except SegmenterError as exc:
        return PartsState(configured=True, problem=f"The segmenter cannot be used: {exc}")
    records: dict[tuple[int, str], SegmentationRecord] = st.session_state.setdefault(RECORDS, {})
    key = (image_id, model_id)
    if key in records:
        return PartsState(configured=True, record=records[key])
    found = find_segmentation(services, image_id, model_id)
    if found is not None:
        records[key] = found
        return PartsState(configured=True, record=found)
    jobs: dict[int, int] = st.session_state.setdefault(JOBS, {})
    job_id = jobs.get(image_id)
    if job_id is None:
        if not may_submit:
            return PartsState(configured=True, note="The parts of this image have not been found yet; finding them "
                                                     "is started by someone who may submit jobs.")
        try:
            job_id = submit_segmentation(services, image_id, user_id=user_id)
        except PermissionDenied as exc:
            return PartsState(configured=True, note=str(exc))
        except InvalidJobRequest as exc:
            # Not remembered: the next run of the page asks again (e.g. once the person's queue has room).
            return PartsState(configured=True, problem=f"Finding the parts was not queued. {exc}")
        jobs[image_id] = job_id
        return PartsState(configured=True, job_id=job_id)
    try:
        job = services.queue.get(job_id)
    except JobNotFound:
        jobs.pop(image_id, None)
        return PartsState(configured=True, problem="The segmentation job disappeared; reload the page to try again.")
    if not job.terminal:
        return PartsState(configured=True, job_id=job_id)
    if job.status is JobStatus.SUCCEEDED and job.result:
        try:
            record = load_segmentation(services, int(job.result["segmentation_id"]))
        except (SegmentationNotFound, KeyError, TypeError, ValueError):
            return PartsState(configured=True, job_id=job_id,
                              problem="The segmentation finished but its label map cannot be read.")
        records[(image_id, record.model_id)] = record
        return PartsState(configured=True, record=record)
    if job.status is JobStatus.CANCELLED:
        return PartsState(configured=True, job_id=job_id, problem="Finding the parts was cancelled.")
    return PartsState(configured=True, job_id=job_id,
                      problem=f"Finding the parts failed: {job.error_message or 'no reason given'}")


def retry(image_id: int) -> None:
    """Forget this image's segment job, so the next run submits a new one."""
    st.session_state.setdefault(JOBS, {}).pop(image_id, None)


def label_map_for(record: SegmentationRecord, shape: tuple[int, int]) -> np.ndarray:
    """The label map at the working copy's ``shape`` (it is stored at the size the segmenter saw)."""
    label_map = record.label_map
    if label_map.shape == shape:
        return label_map
    return resize_labels(label_map, shape)


def colour_of(record: SegmentationRecord, name: str) -> tuple[int, int, int]:
    index = record.label_names.index(name)
    r, g, b = (int(v) for v in _PALETTE[index % 256])
    return r, g, b


def parts_overlay(rgb: np.ndarray, record: SegmentationRecord, alpha: float = 0.5) -> np.ndarray:
    """The image with each part tinted in its own colour (Background, label 0, left as it is)."""
    label_map = label_map_for(record, rgb.shape[:2])
    colours = _PALETTE[label_map.astype(np.int64) % 256].astype(np.float32)
    shown = rgb.astype(np.float32)
    tinted = label_map != 0
    shown[tinted] = shown[tinted] * (1 - alpha) + colours[tinted] * alpha
    return shown.astype(np.uint8)


def chips_markdown(record: SegmentationRecord) -> str:
    """The labels present as badges, largest share first, each with its share of the image."""
    names = sorted(record.present, key=lambda n: -record.shares.get(n, 0.0))
    return " ".join(f":gray-badge[{name} · {record.shares.get(name, 0.0):.0%}]" if record.shares.get(name, 0) >= 0.005
                    else f":gray-badge[{name} · <1%]" for name in names)


def render_parts(image_id: int, state: PartsState, *, may_retry: bool = True) -> Any:
    """The parts strip above the images: progress, the chips and the overlay toggle, or the problem.

    ``may_retry``: whether the person may start the job again (someone only looking may not).
    """
    if not state.configured:
        return
    if state.note is not None and state.record is None:
        st.caption(state.note)
        return
    if state.record is not None:
        record = state.record
        left, right = st.columns([4, 1])
        left.markdown("**Parts found:** " + chips_markdown(record))
        right.toggle("Show parts", key=SHOW_OVERLAY, help="Tint each part of the base image in its own colour.")
        return
    if state.problem is not None:
        st.error(state.problem + " Until then, select regions with the brush or a click; commands can target "
                                 "**Selection** and the whole image.")
        if may_retry and state.job_id is not None and st.button("Find the parts again",
                                                                 key=f"segment_retry_{image_id}"):
            retry(image_id)
            st.rerun()
        return
    assert state.job_id is not None
    # When it ends the whole page runs again, and ``parts_of`` reads the job's outcome.
    watch_job(state.job_id, doing="Finding the parts of this image", cancellable=False)
