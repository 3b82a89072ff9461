"""Label maps as PNG files that carry their own label names.

Up to 256 labels the PNG is palette-indexed: pixel values are the label ids, and any
image viewer shows each label in its own colour (the PASCAL VOC palette). More labels
fall back to 16-bit greyscale. The label names travel in an iTXt chunk, so a stored
label map can be read back without the segmenter that made it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

LABEL_NAMES_KEY = "chatedit.label_names"


class InvalidLabelMap(ValueError):
    """Bytes that are not a label map written by :func:`encode_label_map`."""


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map: label 0 black, neighbours in clearly different colours."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.extend((r, g, b))
    return palette


_PALETTE = voc_palette()


def encode_label_map(label_map: np.ndarray, label_names: Sequence[str]) -> bytes:
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
        raise InvalidLabelMap(f"a label map is an H×W array of integer ids, got shape {label_map.shape} "
                              f"of {label_map.dtype}")
    if label_map.size and (int(label_map.min()) < 0 or int(label_map.max()) >= len(label_names)):
        raise InvalidLabelMap(f"the label map has ids outside 0..{len(label_names) - 1}")
    info = PngImagePlugin.PngInfo()
    info.add_itxt(LABEL_NAMES_KEY, json.dumps(list(label_names), ensure_ascii=False))
    if len(label_names) <= 256:
        image = Image.frombytes("P", (label_map.shape[1], label_map.shape[0]), label_map.astype(np.uint8).tobytes())
        image.putpalette(_PALETTE)
    else:
        image = Image.fromarray(label_map.astype(np.uint16))  # 16-bit greyscale
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, compress_level=3)
    return out.getvalue()


def decode_label_map(data: bytes) -> tuple[np.ndarray, tuple[str, ...]]:
    """The label ids (uint8 or uint16) and the label names of a PNG from :func:`encode_label_map`."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            names_text = image.text.get(LABEL_NAMES_KEY) if hasattr(image, "text") else None
            label_map = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidLabelMap(f"the label map is not a readable PNG ({exc})") from None
    if names_text is None:
        raise InvalidLabelMap("the PNG carries no label names, so it is not a ChatEdit label map")
    try:
        names = json.loads(names_text)
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidLabelMap("the label names in the PNG are damaged")
    return label_map, tuple(names)
