"""The face parts as polygons of MediaPipe's 468-point face mesh.

The index loops are MediaPipe's face-mesh contours (``FACEMESH_FACE_OVAL``, ``FACEMESH_LIPS``,
``FACEMESH_LEFT_EYE`` …) chained into closed polygons.
Index sets from mediapipe/python/solutions/face_mesh_connections.py, Copyright 2021 The MediaPipe
Authors, Apache License 2.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NUM_POINTS = 468

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIPS_OUTER = (0, 37, 39, 40, 185, 61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267)
LIPS_INNER = (13, 82, 81, 80, 191, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
#: Each brow: its lower edge outwards-in, then its upper edge back out.
LEFT_EYEBROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
RIGHT_EYEBROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
#: The chin's lowest point and the eyes' outer corners (the person's right, then left).
CHIN = 152
RIGHT_EYE_OUTER = 33
LEFT_EYE_OUTER = 263
#: Cheek points well inside the skin: where a face's skin colour is sampled.
CHEEKS = (50, 280, 101, 330, 205, 425)


@dataclass(frozen=True)
class FaceMasks:
    """One face's masks at image size; ``face`` is the whole oval (eyes, brows and lips included)."""

    face: np.ndarray
    lips: np.ndarray
    eyes: np.ndarray
    eyebrows: np.ndarray


def face_masks(points: np.ndarray, shape: tuple[int, int]) -> FaceMasks:
    """Rasterise the mesh's face oval, lips (between the outer and inner contour), eyes and brows."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    if points.shape[0] < NUM_POINTS:
        raise ValueError(f"a face mesh has {NUM_POINTS} points, got {points.shape[0]}")
    face = _fill(points, (FACE_OVAL,), shape)
    lips = _fill(points, (LIPS_OUTER,), shape) & ~_fill(points, (LIPS_INNER,), shape)
    eyes = _fill(points, (LEFT_EYE, RIGHT_EYE), shape)
    eyebrows = _fill(points, (LEFT_EYEBROW, RIGHT_EYEBROW), shape)
    # Brows are a few pixels thick at most: widen them by a fraction of the eye distance so they are editable.
    eye_distance = float(np.linalg.norm(points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]))
    grow = round(eye_distance * 0.02)
    if grow > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        eyebrows = cv2.dilate(eyebrows.astype(np.uint8), kernel).astype(bool)
    return FaceMasks(face=face | eyebrows, lips=lips, eyes=eyes, eyebrows=eyebrows)


def _fill(points: np.ndarray, loops: tuple[tuple[int, ...], ...], shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, dtype=np.uint8)
    # Sub-pixel vertices (4 fractional bits) keep small faces' polygons where the mesh puts them.
    polygons = [np.round(points[list(loop)] * 16).astype(np.int32) for loop in loops]
    cv2.fillPoly(canvas, polygons, 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)
