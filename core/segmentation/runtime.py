"""Running an exported segmenter with ONNX Runtime: one session per file and process, shared by threads.

Providers are chosen explicitly (CUDA first when this onnxruntime build has it, CPU
otherwise) and the one a session really got is logged, because onnxruntime falls back to
CPU quietly when CUDA cannot start. ``InferenceSession.run`` is thread-safe, so worker
threads share one session instead of each holding a copy of the weights.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import first_line
from core.segmentation.errors import InvalidSegmenter, SegmenterNotFound
from core.segmentation.metadata import INPUT_NAME, SegmenterMetadata, read_metadata
from core.segmentation.processing import (
    MIN_SHARE,
    preprocess,
    summarise_labels,
    upsample_argmax,
)

if TYPE_CHECKING:
    import onnxruntime

    from core.segmentation.composite import CompositeManifest, CompositeSegmenter

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class SegmentationResult:
    """One image's segmentation: ``label_map[y, x]`` is an index into ``label_names``."""

    label_map: np.ndarray
    label_names: tuple[str, ...]
    present: tuple[str, ...]
    shares: dict[str, float]
    #: The (first) label id of each label present.
    ids: dict[str, int]
    #: What the segmenter could not label and why (a composite segmenter's notes; none from an ONNX file).
    notes: tuple[str, ...] = ()

    def label_entries(self) -> list[dict[str, Any]]:
        """``[{"name", "id", "share"}]`` of the labels present: what is stored and printed."""
        return [{"name": name, "id": self.ids[name], "share": round(self.shares[name], 6)} for name in self.present]


def choose_providers(available: list[str]) -> list[str]:
    """CUDA then CPU where this onnxruntime has CUDA; CPU alone otherwise."""
    return [CUDA, CPU] if CUDA in available else [CPU]


class Segmenter:
    """What every kind of segmenter shares: a model id and label names from its metadata, and its result."""

    path: Path
    metadata: SegmenterMetadata | CompositeManifest
    #: The onnxruntime execution provider it runs on.
    provider: str

    @property
    def model_id(self) -> str:
        return self.metadata.model_id

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.metadata.label_names

    def _result(self, label_map: np.ndarray, min_share: float, notes: tuple[str, ...] = ()) -> SegmentationResult:
        summary = summarise_labels(label_map, self.label_names, min_share)
        return SegmentationResult(label_map=label_map, label_names=self.label_names, present=summary.present,
                                  shares=summary.shares, ids=summary.ids, notes=notes)


class OnnxSegmenter(Segmenter):
    """An exported segmenter: image in, label map out. Build it with :func:`load_segmenter`."""

    def __init__(self, path: Path, metadata: SegmenterMetadata, session: onnxruntime.InferenceSession) -> None:
        self.path = path
        self.metadata = metadata
        self._session = session
        self.provider = session.get_providers()[0]

    def logits(self, pixel_values: np.ndarray) -> np.ndarray:
        """The raw N×C×h×w logits for preprocessed input."""
        (logits,) = self._session.run(None, {INPUT_NAME: pixel_values})
        if logits.ndim != 4 or logits.shape[1] != len(self.label_names):
            raise InvalidSegmenter(self.path, f"it returned logits of shape {logits.shape} for "
                                              f"{len(self.label_names)} labels")
        return logits

    def segment(self, rgb: np.ndarray, *, min_share: float = MIN_SHARE) -> SegmentationResult:
        """Label every pixel of an H×W×3 uint8 image and list the labels present."""
        height, width = np.asarray(rgb).shape[:2]
        logits = self.logits(preprocess(rgb, self.metadata.preprocessing))
        return self._result(upsample_argmax(logits[0], height, width), min_share)


_sessions: dict[tuple[str, int, int], OnnxSegmenter] = {}
_sessions_lock = threading.Lock()


def load_segmenter(path: Path | str) -> OnnxSegmenter | CompositeSegmenter:
    """The segmenter at ``path`` (an ONNX file, or a composite segmenter's folder), loaded once per version and process."""
    path = Path(path)
    if path.is_dir():
        from core.segmentation.composite import load_composite

        return load_composite(path)
    metadata = read_metadata(path)  # raises SegmenterNotFound / InvalidSegmenter in a sentence
    resolved = path.resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    with _sessions_lock:
        segmenter = _sessions.get(key)
        if segmenter is None:
            for stale in [k for k in _sessions if k[0] == key[0]]:
                del _sessions[stale]
            segmenter = OnnxSegmenter(resolved, metadata, _new_session(resolved))
            _sessions[key] = segmenter
            log.info("segmenter %s loaded from %s on %s", metadata.model_id, resolved, segmenter.provider)
        return segmenter


def _new_session(path: Path) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    providers = choose_providers(ort.get_available_providers())
    options = ort.SessionOptions()
    # Idle intra-op threads would otherwise spin for a while after each run, taking CPU from
    # whatever the worker runs next (torch, another job's thread), and spinning makes no run faster.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except FileNotFoundError:
        raise SegmenterNotFound(path) from None
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors for bad models
        raise InvalidSegmenter(path, f"onnxruntime cannot load it ({first_line(exc)})") from None
    if providers[0] == CUDA and session.get_providers()[0] != CUDA:
        log.warning("CUDA is available to onnxruntime but the session for %s runs on %s", path,
                    session.get_providers()[0])
    inputs = [i.name for i in session.get_inputs()]
    if inputs != [INPUT_NAME]:
        raise InvalidSegmenter(path, f"its inputs are {inputs}, not [{INPUT_NAME!r}]")
    return session

