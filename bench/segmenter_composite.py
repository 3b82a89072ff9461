"""Embedded segmenter benchmark: the composite on ONNX Runtime against OpenCV running the original TFLite models.

Usage (from the repository root)::

    .venv/bin/python bench/segmenter_composite.py [--repeats 15] [--json PATH] [--no-overlays]

Both sides do the same work on the same two real photos (scikit-image's ``astronaut``
portrait and OpenCV's ``messi5.jpg``, fetched by ``tests/real_assets.py``): the composite
segmenter's whole pipeline (person mask, face detection, face mesh on its crops, pose on
its crop, derived parts), once with the ONNX files ChatEdit converted and installed, once
with ``cv2.dnn`` running the original ``.tflite`` files. ``networks`` is the time inside
the four networks alone; ``image`` is image in, label map out. Each figure is the median
of ``--repeats`` runs after a warm-up, the two sides alternating within each round.

It also writes the parts overlays ``docs/screenshots/parts-astronaut.png`` and
``docs/screenshots/parts-messi.png`` (each part tinted, with a legend). The benchmark only
reports; it never fails on a target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

SCREENSHOTS = _HERE.parent / "docs" / "screenshots"
#: One colour per label (RGB), chosen to stay apart on skin, clothes and grass.
COLOURS: dict[str, tuple[int, int, int]] = {
    "Hair": (150, 75, 0), "Face": (255, 214, 170), "Lips": (230, 0, 90), "Eyes": (0, 200, 255),
    "Eyebrows": (90, 40, 160), "Neck": (255, 240, 0), "Upper-clothes": (30, 110, 255), "Left-arm": (0, 220, 80),
    "Right-arm": (255, 60, 220), "Pants": (255, 130, 0), "Left-leg": (120, 255, 200), "Right-leg": (170, 90, 255),
}


class TimedRunner:
    """A runner that adds the time spent in its network to a shared total."""

    def __init__(self, inner: Any, totals: dict[str, float]) -> None:
        self.inner = inner
        self.name = inner.name
        self.provider = getattr(inner, "provider", "")
        self._totals = totals

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        try:
            return self.inner.run(tensor)
        finally:
            self._totals["networks"] = self._totals.get("networks", 0.0) + time.perf_counter() - started


def cpu_pressure() -> str | None:
    """Linux's CPU pressure line (PSI): how much other work held the CPU while this ran."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None


def photos() -> dict[str, np.ndarray]:
    from tests.real_assets import astronaut_rgb, messi_rgb

    return {"astronaut": np.ascontiguousarray(astronaut_rgb()), "messi": np.ascontiguousarray(messi_rgb())}


def runners(folder: Path, tflite: Mapping[str, Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The installed ONNX networks and the original TFLite ones on OpenCV, by name."""
    from core.segmentation.composite import MODEL_NAMES, read_manifest
    from core.segmentation.model_runner import OnnxRunner, OpenCvTfliteRunner

    manifest = read_manifest(folder)
    onnx = {name: OnnxRunner(folder / manifest.models[name].file, name=name) for name in MODEL_NAMES}
    opencv = {name: OpenCvTfliteRunner(tflite[name], name=name) for name in MODEL_NAMES}
    return onnx, opencv


def time_side(side: Mapping[str, Any], rgb: np.ndarray) -> tuple[float, float]:
    """(image seconds, networks seconds) of one segmentation."""
    from core.segmentation.composite import segment_with

    totals: dict[str, float] = {}
    timed = {name: TimedRunner(runner, totals) for name, runner in side.items()}
    started = time.perf_counter()
    segment_with(timed, rgb)
    return time.perf_counter() - started, totals.get("networks", 0.0)


def overlay(rgb: np.ndarray, label_map: np.ndarray, title: str) -> np.ndarray:
    """The photo with each part tinted in its colour, outlined, and a legend of the parts present beside it."""
    import cv2

    from core.segmentation.body_parts import LABELS

    image = rgb.astype(np.float32).copy()
    present = []
    for index, name in enumerate(LABELS):
        mask = label_map == index
        if name == "Background" or not mask.any():
            continue
        present.append(name)
        colour = np.array(COLOURS[name], dtype=np.float32)
        image[mask] = image[mask] * 0.4 + colour * 0.6
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(image, contours, -1, tuple(float(c) * 0.6 for c in COLOURS[name]), 1)
    image = image.clip(0, 255).astype(np.uint8)
    height = max(image.shape[0], 28 + 20 * len(present))
    legend = np.full((height, 150, 3), 255, dtype=np.uint8)
    cv2.putText(legend, title, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for row, name in enumerate(present):
        y = 30 + 20 * row
        cv2.rectangle(legend, (8, y), (24, y + 14), COLOURS[name], -1)
        cv2.rectangle(legend, (8, y), (24, y + 14), (0, 0, 0), 1)
        cv2.putText(legend, name, (30, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    canvas = np.full((height, image.shape[1], 3), 255, dtype=np.uint8)
    canvas[:image.shape[0]] = image
    return np.concatenate([canvas, legend], axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures as JSON here.")
    parser.add_argument("--no-overlays", action="store_true", help="Do not rewrite docs/screenshots/parts-*.png.")
    args = parser.parse_args(argv)

    import cv2
    from PIL import Image

    from core.segmentation import load_segmenter
    from core.segmentation.default_segmenter import install_default_segmenter
    from tests.real_assets import cache_dir, mediapipe_models

    models = mediapipe_models()
    with tempfile.TemporaryDirectory(prefix="chatedit-bench-") as tmp:
        folder = install_default_segmenter(Path(tmp), cache_dir=cache_dir(), progress=lambda _: None)
        onnx, opencv = runners(folder, models.models)
        segmenter = load_segmenter(folder)
        images = photos()
        report: dict[str, Any] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
            "onnxruntime_provider": segmenter.provider, "opencv": cv2.__version__,
            "opencv_threads": cv2.getNumThreads(), "repeats": args.repeats, "model_id": segmenter.model_id,
            "images": {},
        }
        for name, rgb in images.items():
            for side in (onnx, opencv):  # warm-up
                time_side(side, rgb)
            samples: dict[str, list[tuple[float, float]]] = {"onnx": [], "opencv": []}
            for _ in range(args.repeats):
                samples["onnx"].append(time_side(onnx, rgb))
                samples["opencv"].append(time_side(opencv, rgb))
            figures = {side: {"image_ms": 1000 * statistics.median(s[0] for s in runs),
                              "networks_ms": 1000 * statistics.median(s[1] for s in runs)}
                       for side, runs in samples.items()}
            result = segmenter.segment(rgb)
            figures["speedup_image"] = figures["opencv"]["image_ms"] / figures["onnx"]["image_ms"]
            figures["speedup_networks"] = figures["opencv"]["networks_ms"] / figures["onnx"]["networks_ms"]
            figures["size"] = f"{rgb.shape[1]}x{rgb.shape[0]}"
            figures["labels"] = {label: round(share, 4) for label, share in result.shares.items()}
            figures["notes"] = list(result.notes)
            report["images"][name] = figures
            print(f"{name} ({figures['size']}): image {figures['onnx']['image_ms']:.1f} ms (ONNX Runtime) vs "
                  f"{figures['opencv']['image_ms']:.1f} ms (OpenCV TFLite) = {figures['speedup_image']:.2f}x; "
                  f"networks {figures['onnx']['networks_ms']:.1f} vs {figures['opencv']['networks_ms']:.1f} ms = "
                  f"{figures['speedup_networks']:.2f}x")
            print("  parts: " + ", ".join(f"{k} {v:.1%}" for k, v in figures["labels"].items()))
            for note in result.notes:
                print(f"  note: {note}")
            if not args.no_overlays:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                target = SCREENSHOTS / f"parts-{name}.png"
                Image.fromarray(overlay(rgb, result.label_map, name)).save(target, optimize=True)
                print(f"  overlay: {target.relative_to(_HERE.parent)}")
    report["cpu_pressure"] = cpu_pressure()
    print(f"CPU pressure at the end: {report['cpu_pressure']}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
