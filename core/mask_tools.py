"""Masks from how a person points at things: clicks, brush strokes, and the thesis' edge optimisation.

With a segmentation, a click selects the whole segment under it and a brush stroke that
mostly covers a segment selects all of it (the thesis' "auto fill", section 3.1.1).
Without one, a click selects the region around it by colour (flood fill) or by GrabCut
from a small box. Then :func:`optimise_mask` (the thesis' Algorithm 1) widens or narrows
the mask along the edges of labels that segmenters cut too tightly (hair, loose clothes),
so a regenerated shirt is not clipped to the old one's silhouette.

Every step is whole-array numpy/OpenCV; ``bench/thesis_mask_optimisation.py`` keeps the
literal per-pixel form of Algorithm 1 as the baseline a test holds this one to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from core.masks import dilate, erode

CONFIG_FILE = Path(__file__).with_name("mask_optimisation.json")

Point = tuple[int, int]
EdgeMode = Literal["dilate", "erode"]


class PointOutsideImage(ValueError):
    """A click outside the image (a stale click from a previous image, or a display-scale mix-up)."""

    def __init__(self, point: Point, shape: tuple[int, int]) -> None:
        super().__init__(f"the point (x={point[0]}, y={point[1]}) is outside the {shape[1]}×{shape[0]} image")
        self.point = point
        self.shape = shape


class InvalidMaskConfig(ValueError):
    """A mask tools config that cannot be used; the message names the entry."""


@dataclass(frozen=True)
class EdgeRule:
    """One line of Algorithm 1's config: adjust ``label``'s edge by ``min(H, W) / rate`` pixels."""

    label: str
    mode: EdgeMode
    rate: float
    protect: tuple[str, ...] = ()

    def radius(self, shape: tuple[int, int]) -> int:
        """The kernel radius for an image of this shape: rate 80 gives 6 px at 512 px, 13 px at 1024 px."""
        return max(1, round(min(shape[:2]) / self.rate))


@dataclass(frozen=True)
class MaskConfig:
    optimise: tuple[EdgeRule, ...]
    auto_fill_min_pixels: int = 100
    flood_tolerance: int = 24
    grabcut_box_fraction: float = 0.4


def parse_mask_config(data: dict[str, Any]) -> MaskConfig:
    try:
        rules = []
        for i, entry in enumerate(data.get("optimise", [])):
            rule = EdgeRule(label=str(entry["label"]), mode=entry["mode"], rate=float(entry["rate"]),
                            protect=tuple(str(p) for p in entry.get("protect", ())))
            if rule.mode not in ("dilate", "erode"):
                raise InvalidMaskConfig(f"optimise[{i}] ({rule.label}): mode must be 'dilate' or 'erode', "
                                        f"got {rule.mode!r}")
            if not rule.rate > 0:
                raise InvalidMaskConfig(f"optimise[{i}] ({rule.label}): rate must be > 0, got {rule.rate:g}")
            rules.append(rule)
        config = MaskConfig(optimise=tuple(rules),
                            auto_fill_min_pixels=int(data.get("auto_fill_min_pixels", 100)),
                            flood_tolerance=int(data.get("flood_tolerance", 24)),
                            grabcut_box_fraction=float(data.get("grabcut_box_fraction", 0.4)))
    except (KeyError, TypeError) as exc:
        raise InvalidMaskConfig(f"the mask config is missing or mistypes {exc}") from None
    if config.auto_fill_min_pixels < 0 or not 0 <= config.flood_tolerance <= 255:
        raise InvalidMaskConfig("auto_fill_min_pixels must be ≥ 0 and flood_tolerance in 0..255")
    if not 0 < config.grabcut_box_fraction <= 1:
        raise InvalidMaskConfig("grabcut_box_fraction must be in (0, 1]")
    return config


@cache
def load_mask_config(path: Path = CONFIG_FILE) -> MaskConfig:
    return parse_mask_config(json.loads(Path(path).read_text(encoding="utf-8")))


def _label_ids(label_names: Sequence[str], names: Sequence[str]) -> list[int]:
    wanted = set(names)
    return [i for i, name in enumerate(label_names) if name in wanted]


def _check_point(point: Point, shape: tuple[int, int]) -> tuple[int, int]:
    x, y = int(point[0]), int(point[1])
    if not (0 <= x < shape[1] and 0 <= y < shape[0]):
        raise PointOutsideImage((x, y), shape[:2])
    return x, y


# ---------------------------------------------------------------- with a segmentation


def fill_points(label_map: np.ndarray, points: Sequence[Point]) -> np.ndarray:
    """Each clicked (x, y) point selects its whole segment (every pixel of the label under it)."""
    label_map = np.asarray(label_map)
    ids = {int(label_map[y, x]) for x, y in (_check_point(p, label_map.shape) for p in points)}
    return np.isin(label_map, sorted(ids))


def auto_fill(brush: np.ndarray, label_map: np.ndarray, min_pixels: int | None = None) -> np.ndarray:
    """The brush strokes, plus every segment touched by more than ``min_pixels`` brushed pixels, whole."""
    brush = np.asarray(brush, dtype=bool)
    label_map = np.asarray(label_map)
    if brush.shape != label_map.shape:
        raise ValueError(f"the brush is {brush.shape[1]}×{brush.shape[0]} but the label map is "
                         f"{label_map.shape[1]}×{label_map.shape[0]}")
    threshold = load_mask_config().auto_fill_min_pixels if min_pixels is None else min_pixels
    touched = np.bincount(label_map[brush].ravel())
    filled = np.flatnonzero(touched > threshold)
    return brush | np.isin(label_map, filled)


def optimise_mask(mask: np.ndarray, label_map: np.ndarray, label_names: Sequence[str],
                  rules: Sequence[EdgeRule] | None = None) -> np.ndarray:
    """Algorithm 1: adjust the mask along the edges of the configured labels it contains.

    For each rule, in order, the rule's region is the part of the *original* mask that
    has the rule's label. ``dilate`` adds the band of pixels within the kernel radius
    outside the region (skipping protected labels the mask does not already hold);
    ``erode`` removes the band of region pixels within the radius of its edge.
    """
    mask = np.asarray(mask, dtype=bool)
    label_map = np.asarray(label_map)
    if mask.shape != label_map.shape:
        raise ValueError(f"the mask is {mask.shape[1]}×{mask.shape[0]} but the label map is "
                         f"{label_map.shape[1]}×{label_map.shape[0]}")
    out = mask.copy()
    for rule in load_mask_config().optimise if rules is None else rules:
        ids = _label_ids(label_names, [rule.label])
        if not ids:
            continue
        region = mask & _is_label(label_map, ids)
        if not region.any():
            continue
        radius = rule.radius(mask.shape)
        # Work in the region's bounding box grown by the radius: nothing outside it can change,
        # and the box's sides are the image's or at least a radius away from every region pixel.
        window = _grown_box(region, radius)
        region = region[window]
        if rule.mode == "dilate":
            band = dilate(region, radius) & ~region
            protected = _is_label(label_map[window], _label_ids(label_names, rule.protect)) & ~mask[window]
            out[window] |= band & ~protected
        else:
            band = region & ~erode(region, radius)
            out[window] &= ~band
    return out


def _is_label(label_map: np.ndarray, ids: list[int]) -> np.ndarray:
    if len(ids) == 1:
        return label_map == ids[0]
    return np.isin(label_map, ids)


def _grown_box(region: np.ndarray, radius: int) -> tuple[slice, slice]:
    x, y, w, h = cv2.boundingRect(region.view(np.uint8))
    height, width = region.shape
    return (slice(max(0, y - radius), min(height, y + h + radius)),
            slice(max(0, x - radius), min(width, x + w + radius)))


# ---------------------------------------------------------------- without a segmentation


def flood_select(rgb: np.ndarray, point: Point, tolerance: int | None = None) -> np.ndarray:
    """The connected region (8-neighbours) whose colours are within ``tolerance`` of the clicked pixel's."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    x, y = _check_point(point, rgb.shape)
    tol = load_mask_config().flood_tolerance if tolerance is None else int(tolerance)
    fill_mask = np.zeros((rgb.shape[0] + 2, rgb.shape[1] + 2), dtype=np.uint8)
    flags = 8 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    cv2.floodFill(rgb.copy(), fill_mask, (x, y), (0, 0, 0), (tol,) * 3, (tol,) * 3, flags)
    return fill_mask[1:-1, 1:-1].astype(bool)


def grabcut_select(rgb: np.ndarray, point: Point, box_fraction: float | None = None,
                   iterations: int = 3) -> np.ndarray:
    """The object around the click: GrabCut inside a box centred on it, the clicked pixel certain foreground.

    Only the connected part that holds the click is kept, so a stray similar patch
    elsewhere in the box is not selected with it.
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    x, y = _check_point(point, rgb.shape)
    fraction = load_mask_config().grabcut_box_fraction if box_fraction is None else box_fraction
    half = max(2, round(min(height, width) * fraction / 2))
    left, top = max(0, x - half), max(0, y - half)
    right, bottom = min(width, x + half + 1), min(height, y + half + 1)
    labels = np.full((height, width), cv2.GC_BGD, dtype=np.uint8)
    labels[top:bottom, left:right] = cv2.GC_PR_FGD
    labels[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = cv2.GC_FGD
    background = np.zeros((1, 65), np.float64)
    foreground = np.zeros((1, 65), np.float64)
    cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), labels, None, background, foreground, iterations,
                cv2.GC_INIT_WITH_MASK)
    selected = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    _, components = cv2.connectedComponents(selected, connectivity=8)
    return components == components[y, x]


def select_at(rgb: np.ndarray, point: Point, *, method: Literal["flood", "grabcut"] = "flood",
              tolerance: int | None = None) -> np.ndarray:
    """The click tool without a segmenter: ``flood`` for flat regions, ``grabcut`` for objects on a busy background."""
    if method == "flood":
        return flood_select(rgb, point, tolerance)
    if method == "grabcut":
        return grabcut_select(rgb, point)
    raise ValueError(f"unknown selection method {method!r}; use 'flood' or 'grabcut'")
