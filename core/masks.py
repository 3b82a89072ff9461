"""Boolean H×W masks: from segmentation labels and the person's selection, and their edges.

Every edit touches only its mask and a thin feathered band around it. The band is a
named, computable region (`feather_band`) so executors and tests can state exactly which
pixels an edit may change; everything outside stays bit-identical.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from core.rules import load_rules

#: The target name for the region the person selected with clicks or brush.
SELECTION = "Selection"


class UnknownLabel(KeyError):
    """A target that is not a label of this image's segmentation."""

    def __init__(self, label: str, known: Sequence[str]) -> None:
        self.label = label
        self.known = tuple(known)
        if self.known:
            message = f"{label!r} is not a part of this image; known parts: {', '.join(self.known)}"
        else:
            message = (f"{label!r} needs a segmentation of this image and there is none; "
                       f"select the region yourself and target {SELECTION!r}")
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class MissingSelection(ValueError):
    """`Selection` was targeted but the person has not selected anything."""

    def __init__(self) -> None:
        super().__init__(f"the command targets {SELECTION!r} but nothing is selected; "
                         "select a region with clicks or the brush first")


class InvalidMask(ValueError):
    """Mask bytes or arrays that cannot be used as a mask for this image."""


def mask_from_labels(label_map: np.ndarray, label_names: Sequence[str],
                     targets: Sequence[str]) -> np.ndarray:
    """The union of the targets' pixels; `label_names[i]` names label id `i`.

    A whole also takes the finer parts it contains (the rules' ``contains``: Face → Lips, Eyes,
    Eyebrows) where this segmenter labels them apart, so "the face" means the whole face.
    """
    names = list(label_names)
    ids: list[int] = []
    for target in targets:
        matches = [i for i, name in enumerate(names) if name == target]
        if not matches:
            raise UnknownLabel(target, names)
        ids.extend(matches)
    for part in load_rules().contains_of(targets):
        ids.extend(i for i, name in enumerate(names) if name == part)
    return np.isin(np.asarray(label_map), ids)


def build_mask(targets: Sequence[str], *, label_map: np.ndarray | None = None,
               label_names: Sequence[str] = (), selection: np.ndarray | None = None,
               shape: tuple[int, int], scale_sources: bool = False) -> np.ndarray:
    """The region a command acts on, at ``shape``; no targets means the whole image (e.g. `adjust`).

    With ``scale_sources``, a label map or selection made on a smaller copy of the image
    (same aspect, e.g. the working copy) is scaled to ``shape``: each target's region is
    found at its source's size and then scaled, so edges stay smooth. Without it, or when
    the aspect differs, a source of another size is an :class:`InvalidMask`.
    """
    height, width = shape[:2]
    if not targets:
        return np.ones((height, width), dtype=bool)
    mask = np.zeros((height, width), dtype=bool)
    labels = [t for t in targets if t != SELECTION]
    if SELECTION in targets:
        if selection is None:
            raise MissingSelection()
        mask |= _fit(np.asarray(selection) != 0, (height, width), "selection", scale_sources)
    if labels:
        if label_map is None:
            raise UnknownLabel(labels[0], ())
        mask |= _fit(mask_from_labels(label_map, label_names, labels), (height, width), "label map", scale_sources)
    return mask


def _fit(mask: np.ndarray, shape: tuple[int, int], what: str, scale: bool) -> np.ndarray:
    if mask.shape == shape:
        return mask
    if not scale or not same_aspect(mask.shape, shape):
        raise InvalidMask(f"the {what} is {mask.shape[1]}×{mask.shape[0]} but the image is {shape[1]}×{shape[0]}")
    return resize_mask(mask, shape)


def same_aspect(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether two H×W sizes are one picture at two scales (each side rounded to whole pixels)."""
    (h1, w1), (h2, w2) = a[:2], b[:2]
    if (h1, w1) == (h2, w2):
        return True
    # With w = W·s + e and h = H·s + f, |e|, |f| ≤ ½: |w·H − h·W| ≤ ½·(W + H) for the larger size W × H.
    big_h, big_w = (h1, w1) if h1 * w1 >= h2 * w2 else (h2, w2)
    return abs(w1 * h2 - h1 * w2) <= 0.5 * (big_w + big_h)


def _scale_target(array: np.ndarray, shape: tuple[int, int], what: str) -> tuple[int, int]:
    """The (H, W) an H×W ``array`` is to be scaled to; an unusable array or size is an :class:`InvalidMask`."""
    height, width = shape[:2]
    if array.ndim != 2:
        raise InvalidMask(f"a {what} is H×W, got shape {array.shape}")
    if array.shape != (height, width) and (height < 1 or width < 1 or array.size == 0):
        raise InvalidMask(f"cannot scale a {array.shape[1]}×{array.shape[0]} {what} to {width}×{height}")
    return height, width


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask scaled to ``shape`` (H, W), its edge following the shape it outlines.

    Scaling up interpolates and keeps what is at least half selected, so a mask drawn on
    the working copy comes out with smooth edges rather than steps as wide as the scale;
    scaling down keeps the pixels that are mostly selected.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = _scale_target(mask, shape, "mask")
    if mask.shape == (height, width):
        return mask.copy()
    shrinking = height * width < mask.size
    scaled = cv2.resize(mask.astype(np.uint8) * 255, (width, height),
                        interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return scaled >= 128


def resize_labels(label_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label map scaled to ``shape`` (H, W) by nearest neighbour: every pixel keeps a real label id, never a blend.

    Each output pixel takes the label under its centre, so a label map made on the working
    copy lines up with the full-size image it is scaled to.
    """
    label_map = np.asarray(label_map)
    height, width = _scale_target(label_map, shape, "label map")
    if label_map.shape == (height, width):
        return label_map.copy()
    rows = _centres(label_map.shape[0], height)
    cols = _centres(label_map.shape[1], width)
    return label_map.take(rows, axis=0).take(cols, axis=1)


def _centres(source: int, target: int) -> np.ndarray:
    """For each of ``target`` pixels, the source pixel under its centre (integer arithmetic: no rounding drift)."""
    return ((2 * np.arange(target, dtype=np.int64) + 1) * source) // (2 * target)


def _kernel(px: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))


def _check_px(px: int) -> int:
    if px < 0 or int(px) != px:
        raise ValueError(f"a mask radius must be a whole number of pixels ≥ 0, got {px!r}")
    return int(px)


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """Grow the mask by `px` pixels (elliptical, so corners round off like a brush)."""
    px = _check_px(px)
    mask = np.asarray(mask, dtype=bool)
    if px == 0 or _uniform(mask):
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), _kernel(px)).astype(bool)


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    """Shrink the mask by `px` pixels; the image border does not erode it."""
    px = _check_px(px)
    mask = np.asarray(mask, dtype=bool)
    if px == 0 or _uniform(mask):
        return mask.copy()
    return cv2.erode(mask.astype(np.uint8), _kernel(px), borderType=cv2.BORDER_REPLICATE).astype(bool)


def _uniform(mask: np.ndarray) -> bool:
    """All selected or none: growing, shrinking or feathering changes nothing (a whole-image edit)."""
    return bool(mask.all()) or not mask.any()


def invert(mask: np.ndarray) -> np.ndarray:
    """Everything but the mask (e.g. 'blur everything but the person')."""
    return ~np.asarray(mask, dtype=bool)


def feather_band(mask: np.ndarray, px: int) -> np.ndarray:
    """The pixels `feather(mask, px)` may give a non-zero alpha: the mask grown by `px`."""
    return dilate(mask, px)


def feather(mask: np.ndarray, px: int) -> np.ndarray:
    """A soft alpha in [0, 1]: a Gaussian ramp across the mask edge, `px` wide on each side.

    Exactly 0 outside `feather_band(mask, px)` and exactly 1 where the whole (2·px+1)²
    window lies inside the mask (so at least 2·px pixels inside): the edit blends into
    its surroundings without touching anything beyond the band.
    """
    px = _check_px(px)
    hard = np.asarray(mask, dtype=bool)
    if px == 0 or _uniform(hard):
        return hard.astype(np.float32)
    size = 2 * px + 1
    alpha = cv2.GaussianBlur(hard.astype(np.float32), (size, size), sigmaX=px / 2.0,
                             borderType=cv2.BORDER_REPLICATE)
    alpha[alpha > 1.0 - 1e-5] = 1.0
    alpha[alpha < 1e-5] = 0.0
    alpha[~feather_band(hard, px)] = 0.0
    return np.clip(alpha, 0.0, 1.0)


def mask_from_png(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Read a mask image (white or any non-zero = selected; transparent = not selected).

    A mask drawn on the working copy or a brush canvas at display size is scaled to
    ``shape`` with :func:`resize_mask` (still a hard mask, with smooth edges).
    """
    height, width = shape[:2]
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            alpha = img.getchannel("A") if "A" in img.getbands() else None
            grey = img.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidMask(f"the mask is not a readable image: {exc}") from exc
    selected = np.asarray(grey) > 0
    if alpha is not None:
        selected &= np.asarray(alpha) > 0
    return resize_mask(selected, (height, width)) if selected.shape != (height, width) else selected


def mask_to_png(mask: np.ndarray) -> bytes:
    """A mask as a greyscale PNG: 255 selected, 0 not."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InvalidMask(f"a mask is H×W, got shape {mask.shape}")
    out = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(out, format="PNG")
    return out.getvalue()
