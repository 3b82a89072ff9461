"""Mask optimisation (the thesis' Algorithm 1): our vectorised form against the literal per-pixel one.

Usage (from the repository root)::

    .venv/bin/python bench/thesis_mask_optimisation.py [--size 1024] [--repeats 3] [--json PATH]

The literal form below walks the image pixel by pixel in Python, as the thesis describes
the algorithm: for each configured label, every pixel on the edge of the masked part of
that label stamps the kernel around itself, adding (``dilate``: unmasked, unprotected
pixels) or removing (``erode``: pixels of the region, stamped from the edge of what lies
outside it) what the stamp covers. It is the baseline and the oracle:
``tests/test_mask_tools.py`` holds :func:`core.mask_tools.optimise_mask` to exactly the
same mask. The benchmark only reports; it never fails on a target.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

# Run as a script, bench/ is first on sys.path; the repository root goes there instead, so
# `core` imports and no script here can shadow a standard-library module.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from core.mask_tools import EdgeRule, load_mask_config, optimise_mask

PERSON_LABELS = ("Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
                 "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf")


def kernel_offsets(radius: int) -> list[tuple[int, int]]:
    """The (dy, dx) offsets of the elliptical kernel ``core.masks`` dilates and erodes with."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return [(dy - radius, dx - radius) for dy in range(2 * radius + 1) for dx in range(2 * radius + 1)
            if kernel[dy][dx]]


def optimise_mask_literal(mask: np.ndarray, label_map: np.ndarray, label_names: Sequence[str],
                          rules: Sequence[EdgeRule]) -> np.ndarray:
    """Algorithm 1, one pixel at a time, in plain Python over lists (no array operations)."""
    height, width = label_map.shape
    original = np.asarray(mask, dtype=bool).tolist()
    labels = np.asarray(label_map).tolist()
    out = [row[:] for row in original]
    for rule in rules:
        wanted = {i for i, name in enumerate(label_names) if name == rule.label}
        protected = {i for i, name in enumerate(label_names) if name in rule.protect}
        if not wanted:
            continue
        region = [[original[y][x] and labels[y][x] in wanted for x in range(width)] for y in range(height)]
        offsets = kernel_offsets(rule.radius((height, width)))
        # dilate stamps from the region's edge; erode from the edge of what lies outside the region.
        inside = rule.mode == "dilate"
        for y in range(height):
            for x in range(width):
                if region[y][x] != inside:
                    continue
                on_edge = ((y > 0 and region[y - 1][x] != inside) or (y < height - 1 and region[y + 1][x] != inside)
                           or (x > 0 and region[y][x - 1] != inside) or (x < width - 1 and region[y][x + 1] != inside))
                if not on_edge:
                    continue
                for dy, dx in offsets:
                    qy, qx = y + dy, x + dx
                    if not (0 <= qy < height and 0 <= qx < width):
                        continue
                    if inside:
                        if not region[qy][qx] and not (labels[qy][qx] in protected and not original[qy][qx]):
                            out[qy][qx] = True
                    elif region[qy][qx]:
                        out[qy][qx] = False
    return np.array(out, dtype=bool)


def person_label_map(size: int) -> np.ndarray:
    """A person-shaped label map at any size: hair around a face, a torso, a dress, arms, background."""
    labels = np.zeros((size, size), dtype=np.uint8)
    s = size / 1024
    ids = {name: i for i, name in enumerate(PERSON_LABELS)}

    def ellipse(name: str, centre: tuple[float, float], axes: tuple[float, float]) -> None:
        cv2.ellipse(labels, (round(centre[0] * s), round(centre[1] * s)), (round(axes[0] * s), round(axes[1] * s)),
                    0, 0, 360, ids[name], thickness=-1, lineType=cv2.LINE_8)

    def box(name: str, x0: float, y0: float, x1: float, y1: float) -> None:
        labels[round(y0 * s):round(y1 * s), round(x0 * s):round(x1 * s)] = ids[name]

    ellipse("Hair", (512, 230), (150, 170))
    ellipse("Face", (512, 260), (105, 125))
    box("Upper-clothes", 340, 390, 690, 640)
    box("Left-arm", 260, 400, 340, 700)
    box("Right-arm", 690, 400, 770, 700)
    box("Dress", 360, 640, 670, 960)
    ellipse("Hair", (700, 450), (30, 60))  # a lock of hair over the shoulder
    return labels


def _time(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="Image side in pixels (default 1024).")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of the vectorised form; median counts.")
    parser.add_argument("--literal-repeats", type=int, default=1, help="Runs of the literal form (slow).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this file.")
    args = parser.parse_args(argv)

    label_map = person_label_map(args.size)
    targets = {"Hair", "Upper-clothes", "Dress"}
    mask = np.isin(label_map, [i for i, n in enumerate(PERSON_LABELS) if n in targets])
    rules = load_mask_config().optimise
    optimise_mask(mask, label_map, PERSON_LABELS, rules)  # warm-up (OpenCV's first call allocates)
    fast_s, fast = _time(lambda: optimise_mask(mask, label_map, PERSON_LABELS, rules), args.repeats)
    slow_s, slow = _time(lambda: optimise_mask_literal(mask, label_map, PERSON_LABELS, rules), args.literal_repeats)
    same = bool(np.array_equal(fast, slow))
    figures = {
        "benchmark": "thesis_mask_optimisation", "size": args.size, "rules": [r.label for r in rules],
        "radius_px": rules[0].radius((args.size, args.size)) if rules else None,
        "pixels_added": int(np.count_nonzero(np.asarray(fast) & ~mask)),
        "vectorised_ms": round(fast_s * 1000, 2), "literal_ms": round(slow_s * 1000, 1),
        "speedup": round(slow_s / fast_s, 1), "same_mask": same,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
