"""MediaPipe's trained ``.tflite`` models, taken out of the ``mediapipe`` wheel on PyPI.

The embedded segmenter is built from these models (Apache-2.0). We never install mediapipe
(its pins clash with ours): pip downloads the wheel without dependencies, only the model
files and the licence are extracted, and each model is checked against the sha256 pinned
here, so a changed upload on the index is noticed instead of converted. The files are the
same in every platform's wheel; pip is asked for one fixed wheel so the download does not
depend on the interpreter it runs under.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from core.segmentation.errors import ModelSourceUnavailable, SegmenterError
from core.wheels import WheelUnavailable, download_wheel, sha256_file

MEDIAPIPE_VERSION = "0.10.21"
#: The wheel pip is asked for (any platform's wheel holds the same model files).
WHEEL_PYTHON_VERSION = "3.11"
WHEEL_PLATFORM = "manylinux_2_28_x86_64"

#: Model name → (member of the wheel, sha256 of the file).
MODEL_FILES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "selfie_segmentation": (
        "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"),
    "selfie_segmentation_landscape": (
        "mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
        "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd"),
    "face_detection_short_range": (
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    "face_landmark": (
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
    "pose_landmark_full": (
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
    "iris_landmark": (
        "mediapipe/modules/iris_landmark/iris_landmark.tflite",
        "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"),
    "pose_detection": (
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    "face_detection_full_range_sparse": (
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
})
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_FILES)
#: The float range MediaPipe's own graphs scale RGB pixels to before each model (its ImageToTensorCalculator
#: options); the models were trained on exactly this.
MODEL_INPUT_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType({
    "selfie_segmentation": (0.0, 1.0),
    "selfie_segmentation_landscape": (0.0, 1.0),
    "face_detection_short_range": (-1.0, 1.0),
    "face_landmark": (0.0, 1.0),
    "pose_landmark_full": (0.0, 1.0),
    "iris_landmark": (0.0, 1.0),
    "pose_detection": (-1.0, 1.0),
    "face_detection_full_range_sparse": (-1.0, 1.0),
})
LICENCE_MEMBER = f"mediapipe-{MEDIAPIPE_VERSION}.dist-info/LICENSE"
REQUIREMENT = f"mediapipe=={MEDIAPIPE_VERSION}"

_SOURCE_FILE = "source.json"


class MediapipeWheelMismatch(SegmenterError, ValueError):
    """The downloaded wheel does not hold the model files pinned here (a changed or damaged upload)."""

    def __init__(self, wheel_name: str, reason: str) -> None:
        super().__init__(f"The wheel {wheel_name} cannot be used for MediaPipe's models: {reason}.")
        self.wheel_name = wheel_name
        self.reason = reason


@dataclass(frozen=True)
class MediapipeModels:
    """The extracted model files of one mediapipe wheel, and where they came from."""

    version: str
    wheel_name: str
    wheel_sha256: str
    #: The wheel's licence file (Apache-2.0), kept beside the models it covers.
    licence: Path
    #: Model name (one of :data:`MODEL_NAMES`) → path of its ``.tflite`` file.
    models: Mapping[str, Path]

    def path(self, name: str) -> Path:
        """The ``.tflite`` file of model ``name``; a ``KeyError`` names the models there are."""
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(f"There is no MediaPipe model named {name!r}; the models are {', '.join(self.models)}.") \
                from None


def fetch_mediapipe_models(cache_dir: Path, *, timeout_s: float = 300) -> MediapipeModels:
    """The models under ``cache_dir``, downloading and extracting the wheel the first time only.

    The extracted files appear at once or not at all (built in a temporary directory, then
    renamed), so an interrupted fetch leaves nothing half-written behind.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / f"mediapipe-{MEDIAPIPE_VERSION}"
    cached = _read_cached(target)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mediapipe-download-", dir=cache_dir) as download_dir:
        wheel = _download_wheel(Path(download_dir), timeout_s)
        with tempfile.TemporaryDirectory(prefix=".mediapipe-extract-", dir=cache_dir) as extract_dir:
            staging = Path(extract_dir) / target.name
            _extract(wheel, staging)
            if target.exists() and _read_cached(target) is None:
                # An extraction by another version of this module (other models): swap it out in one step,
                # so a reader sees the old files or the new ones, never a half-empty folder.
                os.rename(target, Path(extract_dir) / "previous")
            try:
                os.rename(staging, target)
            except OSError:
                # Another process finished first; its complete copy is as good as ours.
                if _read_cached(target) is None:
                    raise
    cached = _read_cached(target)
    if cached is None:  # pragma: no cover - the rename above left a complete directory
        raise FileNotFoundError(f"The MediaPipe models were extracted but {target} is incomplete.")
    return cached


def _download_wheel(download_dir: Path, timeout_s: float) -> Path:
    try:
        return download_wheel(REQUIREMENT, download_dir, wheel_glob="mediapipe-*.whl", timeout_s=timeout_s,
                              python_version=WHEEL_PYTHON_VERSION, platform=WHEEL_PLATFORM)
    except WheelUnavailable as exc:
        raise ModelSourceUnavailable(f"{REQUIREMENT} from the Python package index", exc.reason) from None


def _extract(wheel: Path, staging: Path) -> None:
    """Copy the pinned members of ``wheel`` into ``staging`` and describe them in ``source.json``."""
    (staging / "models").mkdir(parents=True)
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise MediapipeWheelMismatch(wheel.name, "it is not a zip archive") from None
    with archive:
        names = set(archive.namelist())
        missing = [member for member, _ in MODEL_FILES.values() if member not in names]
        if LICENCE_MEMBER not in names:
            missing.append(LICENCE_MEMBER)
        if missing:
            raise MediapipeWheelMismatch(wheel.name, f"it lacks {', '.join(missing)}")
        for name, (member, expected) in MODEL_FILES.items():
            data = archive.read(member)
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise MediapipeWheelMismatch(wheel.name, f"{member} has sha256 {actual}, not the pinned {expected}")
            (staging / "models" / f"{name}.tflite").write_bytes(data)
        (staging / "LICENSE").write_bytes(archive.read(LICENCE_MEMBER))
    source = {"version": MEDIAPIPE_VERSION, "wheel_name": wheel.name, "wheel_sha256": sha256_file(wheel),
              "models": sorted(MODEL_FILES)}
    # Written last: a directory with this file is complete.
    (staging / _SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")


def _read_cached(target: Path) -> MediapipeModels | None:
    """The complete extraction at ``target``, or None where there is none (or it holds other models)."""
    try:
        source = json.loads((target / _SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    models = {name: target / "models" / f"{name}.tflite" for name in MODEL_FILES}
    licence = target / "LICENSE"
    if source.get("models") != sorted(MODEL_FILES) or not all(p.is_file() for p in [licence, *models.values()]):
        return None
    return MediapipeModels(version=source["version"], wheel_name=source["wheel_name"],
                           wheel_sha256=source["wheel_sha256"], licence=licence, models=MappingProxyType(models))
