"""Rotated square regions of an image: cut one out at a network's input size, map its points back.

MediaPipe's landmark networks see a crop centred on the face or body, rotated so the eyes
(or the body) are level; their landmarks come back in crop pixels. A :class:`Roi` is that
crop in image pixels, and one affine matrix takes image pixels to crop pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Roi:
    """A rectangle in image pixels: centre, size, and rotation (radians; its x axis's angle to the image's)."""

    cx: float
    cy: float
    width: float
    height: float
    angle: float = 0.0

    @classmethod
    def around(cls, x0: float, y0: float, x1: float, y1: float, *, scale: float = 1.0, angle: float = 0.0,
               square: bool = True) -> Roi:
        """The box (x0, y0)–(x1, y1) enlarged ``scale`` times about its centre, squared on its longer side."""
        width, height = (x1 - x0) * scale, (y1 - y0) * scale
        if square:
            width = height = max(width, height)
        return cls((x0 + x1) / 2, (y0 + y1) / 2, width, height, angle)

    def to_crop(self, size: int) -> np.ndarray:
        """The 2×3 affine matrix from image pixels to the pixels of a ``size``×``size`` crop."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        sx, sy = size / self.width, size / self.height
        # crop = S · Rᵀ · (image − centre) + size/2
        matrix = np.array([[cos * sx, sin * sx, 0.0], [-sin * sy, cos * sy, 0.0]], dtype=np.float64)
        matrix[:, 2] = np.array([size / 2, size / 2]) - matrix[:, :2] @ np.array([self.cx, self.cy])
        return matrix

    def from_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Crop-pixel points (N×2) as image pixels."""
        inverse = cv2.invertAffineTransform(self.to_crop(size))
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return points @ inverse[:, :2].T + inverse[:, 2]


def crop(rgb: np.ndarray, roi: Roi, size: int) -> np.ndarray:
    """The ROI as a ``size``×``size`` uint8 RGB crop (bilinear; zero outside the image)."""
    return cv2.warpAffine(rgb, roi.to_crop(size), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def crop_to_image(values: np.ndarray, roi: Roi, shape: tuple[int, int]) -> np.ndarray:
    """A crop-sized float map (e.g. a mask) warped back onto an image of ``shape``; zero outside the ROI."""
    size = values.shape[0]
    return cv2.warpAffine(np.ascontiguousarray(values, dtype=np.float32), roi.to_crop(size), (shape[1], shape[0]),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Roi]:
    """The whole image fitted into a ``size`` square keeping its aspect ratio, and the ROI that describes it."""
    height, width = rgb.shape[:2]
    side = float(max(height, width))
    roi = Roi(width / 2, height / 2, side, side)
    return crop(rgb, roi, size), roi


def eye_line_angle(right_eye: np.ndarray, left_eye: np.ndarray) -> float:
    """The rotation that makes the line from the person's right eye to their left eye horizontal."""
    dx, dy = float(left_eye[0] - right_eye[0]), float(left_eye[1] - right_eye[1])
    return math.atan2(dy, dx)
