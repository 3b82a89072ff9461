"""Face detection's SSD decoding: anchors, box and keypoint decoding, weighted non-maximum suppression.

These reproduce what MediaPipe's graph does around ``face_detection_short_range.tflite``
(``SsdAnchorsCalculator``, ``TensorsToDetectionsCalculator``, ``NonMaxSuppressionCalculator``
with the options of ``face_detection_short_range_cpu``): the network only predicts offsets
from these anchors, so any other anchor layout gives wrong boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: SsdAnchorsCalculator options of the short-range face detector.
INPUT_SIZE = 128
STRIDES = (8, 16, 16, 16)
ANCHOR_OFFSET = 0.5
#: Raw boxes and keypoints are in input pixels.
COORD_SCALE = 128.0
NUM_KEYPOINTS = 6
SCORE_CLIP = 100.0
MIN_SCORE = 0.5
MIN_SUPPRESSION_IOU = 0.3


@dataclass(frozen=True)
class Detection:
    """A face in normalised coordinates of the detector's input: box, score, six keypoints (x, y).

    Keypoints: right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion
    (the person's right and left).
    """

    xmin: float
    ymin: float
    width: float
    height: float
    score: float
    keypoints: np.ndarray


def ssd_anchors(input_size: int = INPUT_SIZE, strides: tuple[int, ...] = STRIDES) -> np.ndarray:
    """N×2 anchor centres (x, y), normalised; fixed-size anchors (width = height = 1).

    Layers sharing a stride are one feature map with two anchors per layer per cell (the aspect
    ratio 1 anchor and the interpolated-scale one), in MediaPipe's order.
    """
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = 0
        while layer + same < len(strides) and strides[layer + same] == stride:
            same += 1
        cells = math.ceil(input_size / stride)
        for y in range(cells):
            for x in range(cells):
                centre = ((x + ANCHOR_OFFSET) / cells, (y + ANCHOR_OFFSET) / cells)
                centres.extend([centre] * (2 * same))
        layer += same
    return np.array(centres, dtype=np.float32)


_ANCHORS = ssd_anchors()


def decode_detections(regressors: np.ndarray, scores: np.ndarray, *, min_score: float = MIN_SCORE) -> list[Detection]:
    """Faces from the raw outputs (``1×896×16`` offsets, ``1×896×1`` logits), after weighted suppression."""
    raw = np.asarray(regressors, dtype=np.float32).reshape(-1, 4 + 2 * NUM_KEYPOINTS)
    logits = np.clip(np.asarray(scores, dtype=np.float64).reshape(-1), -SCORE_CLIP, SCORE_CLIP)
    if raw.shape[0] != _ANCHORS.shape[0]:
        raise ValueError(f"the face detector gave {raw.shape[0]} boxes for {_ANCHORS.shape[0]} anchors")
    probability = 1.0 / (1.0 + np.exp(-logits))
    keep = np.flatnonzero(probability >= min_score)
    if keep.size == 0:
        return []
    anchors = _ANCHORS[keep]
    raw = raw[keep] / COORD_SCALE
    cx = raw[:, 0] + anchors[:, 0]
    cy = raw[:, 1] + anchors[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    points = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
    return _weighted_nms(boxes, probability[keep], points)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray) -> list[Detection]:
    """MediaPipe's WEIGHTED suppression: each cluster's box and keypoints are its members' score-weighted mean."""
    order = np.argsort(-scores, kind="stable")
    remaining = order
    found: list[Detection] = []
    while remaining.size:
        best = remaining[0]
        overlap = _iou(boxes[best], boxes[remaining])
        cluster = remaining[overlap > MIN_SUPPRESSION_IOU]
        remaining = remaining[overlap <= MIN_SUPPRESSION_IOU]
        weights = scores[cluster][:, None]
        box = (boxes[cluster] * weights).sum(axis=0) / weights.sum()
        keypoints = (points[cluster] * weights[:, :, None]).sum(axis=0) / weights.sum()
        found.append(Detection(xmin=float(box[0]), ymin=float(box[1]), width=float(box[2] - box[0]),
                               height=float(box[3] - box[1]), score=float(scores[best]), keypoints=keypoints))
    return found
