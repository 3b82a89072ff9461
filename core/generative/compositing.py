"""Pixels in and out of a diffusion run: working sizes, Canny control images, feathered compositing.

The compositing rule is what makes a generative edit local: the output is the input
everywhere outside the feathered mask, bit for bit, however the model changed the
rest of its canvas.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def working_size(height: int, width: int, max_side: int, multiple: int = 8) -> tuple[int, int]:
    """(height, width) no larger than ``max_side`` on the long side, both multiples of ``multiple``."""
    if max_side < multiple:
        raise ValueError(f"max_side must be at least {multiple} pixels, not {max_side}.")
    scale = min(1.0, max_side / max(height, width))
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    return h, w


def resize(image: np.ndarray, size_hw: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image
    shrinking = h * w < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return cv2.resize(image, (w, h), interpolation=interpolation)


def canny(image: np.ndarray, low: int, high: int) -> np.ndarray:
    """The ControlNet canny condition: white edges on black, three channels."""
    if not 0 <= low <= high:
        raise ValueError(f"Canny thresholds must satisfy 0 <= low <= high, not low={low}, high={high}.")
    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), low, high)
    return np.repeat(edges[..., None], 3, axis=2)


def feathered_alpha(mask: np.ndarray, blur_px: int) -> np.ndarray:
    """A float alpha in [0, 1]: 1 inside the mask, fading to exactly 0 within ``blur_px`` outside it."""
    alpha = np.asarray(mask, dtype=bool).astype(np.float32)
    if blur_px <= 0:
        return alpha
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * blur_px + 1, 2 * blur_px + 1))
    grown = cv2.dilate(alpha, kernel)
    soft = cv2.GaussianBlur(grown, (0, 0), sigmaX=blur_px / 2)
    soft = np.maximum(soft, alpha)
    soft[grown == 0] = 0.0  # nothing leaks past the feather band
    return soft


def composite(original: np.ndarray, generated: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``generated`` where alpha is 1, ``original`` where it is 0 (exactly), blended between."""
    if original.shape != generated.shape:
        raise ValueError(f"cannot composite a {generated.shape} image onto a {original.shape} one")
    a = alpha[..., None]
    blended = np.clip(np.rint(original.astype(np.float32) * (1 - a) + generated.astype(np.float32) * a), 0, 255)
    return np.where(a > 0, blended.astype(np.uint8), original)


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def cut(self, array: np.ndarray) -> np.ndarray:
        return array[self.top:self.bottom, self.left:self.right]


def mask_box(mask: np.ndarray, margin: float = 0.0) -> Box | None:
    """The mask's bounding box grown by ``margin`` of its size on each side, clipped to the image; None when empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    dy, dx = int((bottom - top) * margin), int((right - left) * margin)
    h, w = mask.shape[:2]
    return Box(max(0, top - dy), max(0, left - dx), min(h, bottom + dy), min(w, right + dx))


def mask_fraction(mask: np.ndarray) -> float:
    """The mask's bounding box as a fraction of the image area (how small the edited region is)."""
    box = mask_box(mask)
    return 0.0 if box is None else box.height * box.width / float(mask.shape[0] * mask.shape[1])
