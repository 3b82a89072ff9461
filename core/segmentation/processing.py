"""The numeric steps around the network: the image processor's preprocessing, upsampling, labels present.

Preprocessing reproduces transformers' PIL image processor step for step (Pillow resize
on the uint8 image, rescale in float64 then float32, normalise in float32), because a
segmenter is only as good as the inputs it was trained on. Upsampling reproduces
``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)``, the
way the model card's post-processing does it, in row strips so a 40-megapixel upload
does not need all its per-label logits in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.segmentation.metadata import RESAMPLE_NAMES, Preprocessing

#: Labels covering less of the image than this are specks, not parts of it.
MIN_SHARE = 0.001
_PIL_FILTERS = {name: Image.Resampling(value) for value, name in RESAMPLE_NAMES.items()}
#: Output pixels upsampled at once: bounds the float32 working set to about this × labels × 4 bytes × 3.
_STRIP_PIXELS = 1 << 18


def preprocess(rgb: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """An H×W×3 uint8 image as the 1×3×h×w float32 ``pixel_values`` the model expects."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"a segmenter needs an H×W×3 uint8 image, got shape {rgb.shape} of {rgb.dtype}")
    image = rgb
    if prep.do_resize:
        resized = Image.fromarray(np.ascontiguousarray(rgb)).resize((prep.width, prep.height), resample=_PIL_FILTERS[prep.resample])
        image = np.asarray(resized)
    if prep.do_rescale:
        pixels = (image.astype(np.float64) * prep.rescale_factor).astype(np.float32)
    else:
        pixels = image.astype(np.float32)
    if prep.do_normalize:
        pixels = (pixels - np.array(prep.image_mean, dtype=np.float32)) / np.array(prep.image_std, dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def _bilinear_taps(size_in: int, size_out: int, rows: slice | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of torch's bilinear, align_corners=False, no antialias."""
    out = np.arange(size_out, dtype=np.float64)[rows if rows is not None else slice(None)]
    src = np.maximum((out + 0.5) * (size_in / size_out) - 0.5, 0.0).astype(np.float32)
    low = np.floor(src).astype(np.int64)
    low = np.minimum(low, size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    weight = (src - low).astype(np.float32)
    return low, high, weight


def upsample_argmax(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """The label id of every pixel of an H×W image, from C×h×w logits (bilinear upsampling, then argmax)."""
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 3:
        raise ValueError(f"expected C×h×w logits, got shape {logits.shape}")
    labels, h, w = logits.shape
    hwc = np.ascontiguousarray(logits.transpose(1, 2, 0))
    x0, x1, wx = _bilinear_taps(w, width)
    wx = wx[None, :, None]
    dtype = np.uint8 if labels <= 256 else np.uint16
    label_map = np.empty((height, width), dtype=dtype)
    strip = max(1, _STRIP_PIXELS // max(1, width))
    for top in range(0, height, strip):
        rows = slice(top, min(height, top + strip))
        y0, y1, wy = _bilinear_taps(h, height, rows)
        wy = wy[:, None, None]
        across = hwc[y0] * (1 - wy) + hwc[y1] * wy
        full = across[:, x0] * (1 - wx) + across[:, x1] * wx
        label_map[rows] = full.argmax(axis=2)
    return label_map


@dataclass(frozen=True)
class LabelSummary:
    """The labels present in a label map (each covering at least ``MIN_SHARE``) and their pixel shares."""

    present: tuple[str, ...]
    shares: dict[str, float]
    ids: dict[str, int]


def summarise_labels(label_map: np.ndarray, label_names: tuple[str, ...] | list[str],
                     min_share: float = MIN_SHARE) -> LabelSummary:
    counts = np.bincount(np.asarray(label_map).ravel(), minlength=len(label_names))
    if len(counts) > len(label_names):
        raise ValueError(f"the label map has id {len(counts) - 1} but only {len(label_names)} label names")
    total = max(1, int(counts.sum()))
    present: list[str] = []
    shares: dict[str, float] = {}
    ids: dict[str, int] = {}
    for label_id, count in enumerate(counts.tolist()):
        share = count / total
        if count and share >= min_share:
            name = label_names[label_id]
            present.append(name)
            shares[name] = shares.get(name, 0.0) + share
            ids.setdefault(name, label_id)
    return LabelSummary(present=tuple(dict.fromkeys(present)), shares=shares, ids=ids)
