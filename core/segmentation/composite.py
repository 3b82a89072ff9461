"""The composite segmenter: MediaPipe's networks (converted to ONNX) plus derived parts, as one segmenter.

It is a folder, not a file: the converted ``.onnx`` networks, MediaPipe's licence and a
``segmenter.json`` manifest that says what each label is made from, which parts are
approximate, and where every network came from. ``load_segmenter`` and ``read_metadata``
accept such a folder wherever they accept an exported ONNX file, and its ``segment`` gives
the same :class:`~core.segmentation.runtime.SegmentationResult`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import first_line
from core.segmentation.body_parts import LABELS, derive_parts
from core.segmentation.errors import InvalidSegmenter, SegmenterNotFound
from core.segmentation.model_runner import ModelRunner
from core.segmentation.perception import FACE_DETECTOR, FACE_MESH, MODEL_OUTPUTS, POSE, SELFIE, observe
from core.segmentation.runtime import SegmentationResult, Segmenter

log = logging.getLogger(__name__)

MANIFEST = "segmenter.json"
FORMAT = "chatedit-composite-segmenter"
FORMAT_VERSION = 1
#: The version of the code that turns the networks' outputs into parts: part of the model id, so a change
#: to how parts are derived never reuses label maps cached under the old one.
CODE_VERSION = 1
MODEL_ID_PREFIX = "chatedit-parts"
#: Every part found is listed, however small: the parts are polygons and despeckled regions, never argmax
#: noise, and a portrait's eyes cover less than the share that filters noise out of a network's label map.
PART_MIN_SHARE = 0.0
#: The networks a composite segmenter runs.
MODEL_NAMES: tuple[str, ...] = (SELFIE, FACE_DETECTOR, FACE_MESH, POSE)

#: Where each label comes from: (source, approximate).
LABEL_ORIGINS: Mapping[str, tuple[str, bool]] = {
    "Background": ("learned: not the main person in selfie_segmentation / pose_landmark_full's person mask", False),
    "Hair": ("derived: person pixels around and above the face_landmark face oval, not face, not skin-coloured", True),
    "Face": ("learned: face_landmark face oval (FACEMESH_FACE_OVAL)", False),
    "Lips": ("learned: face_landmark, between the outer and inner lip contours (FACEMESH_LIPS)", False),
    "Eyes": ("learned: face_landmark eye contours (FACEMESH_LEFT_EYE, FACEMESH_RIGHT_EYE)", False),
    "Eyebrows": ("learned: face_landmark brow contours (FACEMESH_*_EYEBROW), widened a little", False),
    "Neck": ("derived: skin-coloured person pixels between the chin (face_landmark) and the shoulders (pose 11, 12)",
             True),
    "Upper-clothes": (("derived: person pixels between the chin and the hips (pose 23, 24), and arm pixels that "
                       "are not skin-coloured (sleeves)"), True),
    "Left-arm": ("derived: skin-coloured person pixels near pose 11-13-15 and the left hand (17, 19, 21)", True),
    "Right-arm": ("derived: skin-coloured person pixels near pose 12-14-16 and the right hand (18, 20, 22)", True),
    "Pants": ("derived: non-skin person pixels below the hips (pose 23, 24) coloured like the band under them", True),
    "Left-leg": ("derived: the rest of the lower body nearer pose 23-25-27-29-31", True),
    "Right-leg": ("derived: the rest of the lower body nearer pose 24-26-28-30-32", True),
}


@dataclass(frozen=True)
class ModelSource:
    """One converted network: its file here, and the TFLite file inside which wheel it was converted from."""

    file: str
    sha256: str
    wheel: str
    version: str
    wheel_sha256: str
    member: str
    tflite_sha256: str
    max_relative_diff: float


@dataclass(frozen=True)
class CompositeManifest:
    """What ``segmenter.json`` says; ``model_id``, ``source`` and ``label_names`` as in an ONNX file's metadata."""

    model_id: str
    source: str
    label_names: tuple[str, ...]
    labels: dict[str, dict[str, Any]]
    models: dict[str, ModelSource]
    licences: tuple[dict[str, str], ...]
    code_version: int

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "model_id": self.model_id, "source": self.source,
            "code_version": self.code_version, "label_names": list(self.label_names), "labels": self.labels,
            "models": {name: vars(model) for name, model in self.models.items()}, "licences": list(self.licences),
        }


def composite_model_id(model_sha256: Mapping[str, str], code_version: int = CODE_VERSION) -> str:
    """``chatedit-parts@<12 hex>``: names the converted networks and the code that derives the parts."""
    digest = hashlib.sha256(f"{FORMAT}/{FORMAT_VERSION}/code {code_version}\n".encode())
    for name in sorted(model_sha256):
        digest.update(f"{name} {model_sha256[name]}\n".encode())
    return f"{MODEL_ID_PREFIX}@{digest.hexdigest()[:12]}"


def label_origins() -> dict[str, dict[str, Any]]:
    return {name: {"source": LABEL_ORIGINS[name][0], "approximate": LABEL_ORIGINS[name][1]} for name in LABELS}


def is_composite(path: Path | str) -> bool:
    """Whether ``path`` is a folder (a composite segmenter, or a damaged one), not an ONNX file."""
    return Path(path).is_dir()


def read_manifest(path: Path | str) -> CompositeManifest:
    """The manifest of the composite segmenter in folder ``path``; read once per manifest version and process."""
    path = Path(path)
    manifest = path / MANIFEST
    try:
        stat = manifest.resolve().stat()
    except FileNotFoundError:
        if not path.exists():
            raise SegmenterNotFound(path) from None
        raise InvalidSegmenter(path, f"it is a folder without {MANIFEST}") from None
    return _read_manifest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_manifest(folder: str, mtime_ns: int, size: int) -> CompositeManifest:
    path = Path(folder)
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidSegmenter(path, f"its {MANIFEST} is not readable JSON ({type(exc).__name__})") from None
    try:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"its {MANIFEST} is not a ChatEdit composite segmenter manifest")
        if data.get("format_version") != FORMAT_VERSION or data.get("code_version") != CODE_VERSION:
            raise ValueError(f"it was installed by another version of ChatEdit (manifest {data.get('format_version')}, "
                             f"code {data.get('code_version')}); run `chatedit models install-default` again")
        label_names = tuple(data["label_names"])
        if label_names != LABELS:
            raise ValueError(f"its labels {list(label_names)} are not the ones this version derives")
        models = {name: ModelSource(**entry) for name, entry in data["models"].items()}
        if sorted(models) != sorted(MODEL_NAMES):
            raise ValueError(f"it holds the networks {sorted(models)}, not {sorted(MODEL_NAMES)}")
        expected_id = composite_model_id({name: model.sha256 for name, model in models.items()})
        if data["model_id"] != expected_id:
            raise ValueError(f"its model id {data['model_id']!r} does not name its networks ({expected_id})")
        return CompositeManifest(model_id=str(data["model_id"]), source=str(data.get("source", "")),
                                 label_names=label_names, labels=dict(data["labels"]), models=models,
                                 licences=tuple(data.get("licences", ())), code_version=int(data["code_version"]))
    except KeyError as exc:
        raise InvalidSegmenter(path, f"its {MANIFEST} lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidSegmenter(path, str(exc).rstrip(".")) from None


class CompositeSegmenter(Segmenter):
    """Image in, label map out, through the networks and the derived parts. Build it with :func:`load_composite`."""

    def __init__(self, path: Path, manifest: CompositeManifest, runners: Mapping[str, ModelRunner]) -> None:
        self.path = path
        self.metadata = manifest
        self._runners = dict(runners)
        self.provider = str(getattr(runners[POSE], "provider", "CPUExecutionProvider"))

    def segment(self, rgb: np.ndarray, *, min_share: float = PART_MIN_SHARE) -> SegmentationResult:
        """Label every pixel of an H×W×3 uint8 image; notes say what could not be found and why."""
        label_map, notes = segment_with(self._runners, rgb)
        return self._result(label_map, min_share, notes)


def segment_with(runners: Mapping[str, ModelRunner], rgb: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """The label map (ids into :data:`LABELS`) and notes, with any runners (ONNX here, OpenCV in the benchmark)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"a segmenter needs an H×W×3 uint8 image, got shape {rgb.shape} of {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb)
    seen = observe(rgb, runners)
    parts = derive_parts(rgb, seen)
    return parts.label_map, seen.notes


_loaded: dict[tuple[str, str], CompositeSegmenter] = {}
_loaded_lock = threading.Lock()


def load_composite(path: Path | str) -> CompositeSegmenter:
    """The composite segmenter in folder ``path``, loaded once per installation and process."""
    path = Path(path)
    manifest = read_manifest(path)
    key = (str(path.resolve()), manifest.model_id)
    with _loaded_lock:
        segmenter = _loaded.get(key)
        if segmenter is None:
            for stale in [k for k in _loaded if k[0] == key[0]]:
                del _loaded[stale]
            segmenter = CompositeSegmenter(path.resolve(), manifest, _runners(path.resolve(), manifest))
            _loaded[key] = segmenter
            log.info("segmenter %s loaded from %s on %s", manifest.model_id, path, segmenter.provider)
        return segmenter


def _runners(path: Path, manifest: CompositeManifest) -> dict[str, ModelRunner]:
    """One onnxruntime session per network, each file checked against the sha256 the manifest records."""
    from core.segmentation.model_runner import OnnxRunner

    runners: dict[str, ModelRunner] = {}
    for name in MODEL_NAMES:
        source = manifest.models[name]
        file = path / source.file
        try:
            data = file.read_bytes()
        except OSError:
            raise InvalidSegmenter(path, f"its network {source.file} is missing") from None
        if hashlib.sha256(data).hexdigest() != source.sha256:
            raise InvalidSegmenter(path, f"its network {source.file} does not match the sha256 in {MANIFEST}")
        try:
            runner = OnnxRunner(data, name=name)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors for bad models
            raise InvalidSegmenter(path, f"onnxruntime cannot load {source.file} ({first_line(exc)})") from None
        missing = [o for o in MODEL_OUTPUTS[name] if o not in runner.output_names]
        if missing:
            raise InvalidSegmenter(path, f"its network {source.file} lacks the outputs {missing}")
        runners[name] = runner
    return runners


def clear_loaded() -> None:
    """Forget every loaded composite segmenter (tests; a worker never needs this)."""
    with _loaded_lock:
        _loaded.clear()
