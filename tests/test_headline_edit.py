"""The product's headline flow on a real photo with the embedded defaults: real parts, the rule planner, classical edits.

"make her jacket red and blur the background" on scikit-image's astronaut, with the default
segmenter built from MediaPipe's real weights: the planner writes recolor Upper-clothes + blur
Background, and in the output the suit is redder, the corners blurrier and the face unchanged.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.settings import Settings
from jobs.edits import EditRequest, submit_edit
from jobs.histories import start_history
from jobs.images import image_rgb, store_upload
from jobs.planning import plan_request
from jobs.queue import JobStatus
from jobs.segmentation import segment_image
from jobs.services import Services
from tests import real_assets
from tests.conftest import running_worker, services_with

REQUEST = "make her jacket red and blur the background"


def _redness(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Mean Lab a* (green → red) of the masked pixels."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB).astype(np.float32)
    return float(lab[..., 1][mask].mean())


def _sharpness(rgb: np.ndarray, box: tuple[slice, slice]) -> float:
    """Variance of the Laplacian in a box: what blurring lowers."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[box]), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _interior(mask: np.ndarray, margin: int) -> np.ndarray:
    """The mask without a band of ``margin`` pixels along its edge (where feathering may reach)."""
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)).astype(bool)


def test_make_her_jacket_red_and_blur_the_background(settings: Settings, services: Services,
                                                    default_segmenter: Path) -> None:
    # The database is the `services` fixture's (migrated); these services only add the segmenter.
    with services_with(settings, segmenter=default_segmenter) as services:
        _headline(services)


def _headline(services: Services) -> None:
    stored = store_upload(services, real_assets.astronaut_png_bytes())
    history = start_history(services, stored.id, title="astronaut")
    parts = segment_image(services, stored.id)
    assert {"Background", "Face", "Upper-clothes"} <= set(parts.present)

    plan = plan_request(services, REQUEST, labels=parts.present)
    commands = [c.to_wire() for c in plan.commands]
    assert commands == [{"command": "recolor", "paras": [["Upper-clothes"], "red"]},
                        {"command": "blur", "paras": [["Background"], 0.5]}]

    job_id = submit_edit(services, EditRequest(image_id=stored.id, commands=commands, history_id=history.history_id,
                                               parent_step_id=history.root_step_id))
    with running_worker(services, lanes=["interactive", "gpu"]):
        job = services.queue.wait(job_id, timeout_s=120)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    before = image_rgb(services, stored.id)
    after = image_rgb(services, int(job.result["image_id"]))
    assert after.shape == before.shape

    names = list(parts.label_names)
    suit = parts.label_map == names.index("Upper-clothes")
    face = np.isin(parts.label_map, [names.index(n) for n in ("Face", "Lips", "Eyes", "Eyebrows")])
    # The suit is clearly redder (the astronaut's suit starts orange).
    assert _redness(after, _interior(suit, 6)) > _redness(before, _interior(suit, 6)) + 8
    # Each corner of the studio backdrop is blurrier.
    side = before.shape[0] // 8
    for rows in (slice(0, side), slice(-side, None)):
        for cols in (slice(0, side), slice(-side, None)):
            if parts.label_map[rows, cols].mean() != 0:  # only corners that are background
                continue
            assert _sharpness(after, (rows, cols)) < 0.7 * _sharpness(before, (rows, cols))
    # The face is untouched away from its edge.
    inside = _interior(face, 8)
    assert inside.sum() > 2000
    difference = np.abs(after.astype(int) - before.astype(int))[inside]
    assert difference.max() <= 2, f"face changed by up to {difference.max()} levels"
    assert difference.mean() < 0.1
