"""The embedded default segmenter: which segmenter a process uses, and installing the default one.

The default is a composite segmenter built from MediaPipe's trained networks, fetched from
the ``mediapipe`` wheel on PyPI, converted to ONNX by our own converter and checked against
OpenCV's run of the original ``.tflite`` files before anything is written. It lives in
``DATA_DIR/models/chatedit-parts`` and appears there at once or not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.segmentation.body_parts import LABELS
from core.segmentation.composite import (
    CODE_VERSION,
    MANIFEST,
    MODEL_NAMES,
    CompositeManifest,
    ModelSource,
    composite_model_id,
    label_origins,
    read_manifest,
)
from core.segmentation.errors import SegmenterError
from core.segmentation.perception import MODEL_INPUT_SIZES

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_FOLDER = "chatedit-parts"
LICENCE_FILE = "LICENSE"
#: Largest |ONNX - OpenCV| an output may differ by, relative to that output's largest magnitude (at least 1):
#: landmark outputs are pixel coordinates and mask outputs are logits in the hundreds, whose float32 rounding
#: grows with them.
CHECK_TOLERANCE = 1e-4
#: Lone values may go past it, this many of an output's values at most, by at most OUTLIER_FACTOR times: a
#: ReLU6 that clips in one runtime and not in the other, times a large weight after it, moves one value alone.
OUTLIER_SHARE = 1e-3
OUTLIER_FACTOR = 100.0
#: Value range each network is fed (MediaPipe's preprocessing), so the check runs on realistic inputs.
INPUT_RANGES = {"face_detection_short_range": (-1.0, 1.0)}

Progress = Callable[[str], None]


class ConversionMismatch(SegmenterError, RuntimeError):
    """A converted network disagrees with the original run by OpenCV: the default segmenter is not installed."""

    def __init__(self, model_name: str, output: str, diff: float, allowed: float) -> None:
        super().__init__(f"The converted {model_name} differs from the original TFLite model on its output {output} "
                         f"by {diff:.2e} (at most {allowed:.2e} is allowed), so the default segmenter was not "
                         "installed.")
        self.model_name = model_name
        self.output = output
        self.diff = diff
        self.allowed = allowed


def default_segmenter_path(settings: Settings) -> Path:
    """Where the default segmenter is installed for these settings."""
    return Path(settings.data_dir) / "models" / DEFAULT_FOLDER


def segmenter_in_use(settings: Settings) -> Path | None:
    """The segmenter this process uses: CHATEDIT_SEGMENTER when set, else the installed default, else none."""
    if settings.segmenter is not None:
        return settings.segmenter
    default = default_segmenter_path(settings)
    return default if (default / MANIFEST).is_file() else None


def install_default_segmenter(data_dir: Path | str, *, progress: Progress | None = None,
                              cache_dir: Path | str | None = None) -> Path:
    """Install the default segmenter under ``data_dir`` (nothing to do when it is already there); returns its folder.

    The mediapipe wheel's models are kept in ``cache_dir`` (default ``DATA_DIR/models/.cache``).

    Raises ``ModelSourceUnavailable`` when PyPI cannot be reached, ``ConversionMismatch`` when a
    converted network does not match the original.
    """
    from core.segmentation.mediapipe_source import MODEL_FILES, fetch_mediapipe_models

    say = progress or (lambda message: log.info("%s", message))
    target = Path(data_dir) / "models" / DEFAULT_FOLDER
    if is_installed(target):
        say(f"The default segmenter is already installed in {target}.")
        return target
    # 1. Fetch MediaPipe's models (the wheel is downloaded once and kept in the cache).
    say("Fetching MediaPipe's models from PyPI (the mediapipe wheel, about 36 MB, once) …")
    models = fetch_mediapipe_models(Path(cache_dir) if cache_dir is not None else Path(data_dir) / "models" / ".cache")
    # 2. Convert each network, and check it against OpenCV's run of the original.
    converted: dict[str, bytes] = {}
    sources: dict[str, ModelSource] = {}
    for name in MODEL_NAMES:
        say(f"Converting {name} to ONNX and checking it against the original …")
        tflite = models.path(name).read_bytes()
        onnx_bytes = _convert(name, tflite)
        diff = check_conversion(name, tflite, onnx_bytes)
        converted[name] = onnx_bytes
        sources[name] = ModelSource(
            file=f"{name}.onnx", sha256=hashlib.sha256(onnx_bytes).hexdigest(), wheel=models.wheel_name,
            version=models.version, wheel_sha256=models.wheel_sha256, member=MODEL_FILES[name][0],
            tflite_sha256=hashlib.sha256(tflite).hexdigest(), max_relative_diff=float(f"{diff:.3g}"))
    # 3. Write the folder next to its final place, then rename it there in one step.
    manifest = CompositeManifest(
        model_id=composite_model_id({name: s.sha256 for name, s in sources.items()}),
        source=f"mediapipe=={models.version} (PyPI), converted to ONNX by ChatEdit", label_names=LABELS,
        labels=label_origins(), models=sources, code_version=CODE_VERSION,
        licences=({"file": LICENCE_FILE, "name": "Apache-2.0",
                   "covers": f"MediaPipe's models, from {models.wheel_name}"},))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_FOLDER}-", dir=target.parent))
    try:
        for name, data in converted.items():
            (staging / sources[name].file).write_bytes(data)
        shutil.copyfile(models.licence, staging / LICENCE_FILE)
        (staging / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        staging.chmod(0o755)  # a temporary directory is private; the installed folder is read by every worker
        _replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"Installed the default segmenter {manifest.model_id} in {target}.")
    return target


def is_installed(target: Path) -> bool:
    """A usable installation: a current manifest, and every network file matching its recorded sha256."""
    try:
        manifest = read_manifest(target)
    except SegmenterError:
        return False
    for source in manifest.models.values():
        try:
            data = (target / source.file).read_bytes()
        except OSError:
            return False
        if hashlib.sha256(data).hexdigest() != source.sha256:
            return False
    return (target / LICENCE_FILE).is_file()


def _replace(staging: Path, target: Path) -> None:
    """Put the finished folder at ``target``; an outdated or damaged one there is moved away first."""
    if target.exists():
        if is_installed(target):
            return  # another process installed it meanwhile
        old = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_FOLDER}-old-", dir=target.parent))
        os.replace(target, old / "previous")
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(staging, target)
    except OSError:
        if not is_installed(target):
            raise


def _convert(name: str, tflite: bytes) -> bytes:
    from core.segmentation.tflite_onnx import tflite_to_onnx

    return tflite_to_onnx(tflite, model_name=name).SerializeToString()


def check_inputs(name: str) -> list[np.ndarray]:
    """Two deterministic inputs in the network's value range: a seeded random image and a gradient."""
    size = MODEL_INPUT_SIZES[name]
    low, high = INPUT_RANGES.get(name, (0.0, 1.0))
    noise = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    gradient = np.stack([xx, yy, (xx + yy) / 2], axis=2)[None]
    return [(low + (high - low) * x).astype(np.float32) for x in (noise, gradient)]


def check_conversion(name: str, tflite: bytes, onnx_bytes: bytes) -> float:
    """The largest relative |ONNX - OpenCV| over the check inputs and every output; raises past the tolerance.

    Every output of the network is compared, not only those the segmenter reads, so a converter
    fault anywhere in the graph is caught.
    """
    from core.segmentation.model_runner import OnnxRunner, OpenCvTfliteRunner

    ours, reference = OnnxRunner(onnx_bytes, name=name), OpenCvTfliteRunner(tflite, name=name)
    worst = 0.0
    for tensor in check_inputs(name):
        expected = reference.run(tensor)
        got = ours.run(tensor)
        for output, want in expected.items():
            have = got.get(output)
            if have is None or have.shape != want.shape:
                raise ConversionMismatch(name, output, float("inf"), CHECK_TOLERANCE)
            scale = max(1.0, float(np.abs(want).max()))
            diffs = np.abs(have.astype(np.float64) - want)
            beyond = int((diffs > CHECK_TOLERANCE * scale).sum())
            diff = float(diffs.max())
            if beyond > OUTLIER_SHARE * diffs.size or diff > OUTLIER_FACTOR * CHECK_TOLERANCE * scale:
                allowed = CHECK_TOLERANCE * scale * (1.0 if beyond > OUTLIER_SHARE * diffs.size else OUTLIER_FACTOR)
                raise ConversionMismatch(name, output, diff, allowed)
            worst = max(worst, diff / scale)
    return worst
