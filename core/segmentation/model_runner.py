"""Run one of MediaPipe's networks: an image tensor in, its named outputs out, in TFLite's own layout.

The composite segmenter runs the ONNX files our converter made (onnxruntime); the
install check and the benchmark run the original ``.tflite`` files with OpenCV for the
same work. Both speak NHWC float32 in and TFLite-shaped outputs out, so the code around
the networks cannot tell them apart.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ModelRunner(Protocol):
    """A network: ``run`` takes a 1×H×W×3 float32 tensor and returns every output by its TFLite name."""

    name: str

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]: ...


class OnnxRunner:
    """An ONNX model on onnxruntime (CUDA first when this build has it); sessions are thread-safe."""

    def __init__(self, path: Path | str | bytes, *, name: str, threads: int = 0) -> None:
        import onnxruntime as ort

        self.name = name
        available = ort.get_available_providers()
        providers = [CUDA, CPU] if CUDA in available else [CPU]
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        source: Any = path if isinstance(path, bytes) else str(path)
        self._session = ort.InferenceSession(source, options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.provider = self._session.get_providers()[0]

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self._outputs)

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(self._outputs, {self._input: np.ascontiguousarray(tensor, dtype=np.float32)})
        return dict(zip(self._outputs, values, strict=True))


class OpenCvTfliteRunner:
    """The original ``.tflite`` file on OpenCV's DNN module: the reference our ONNX files are checked against.

    OpenCV takes NCHW blobs and gives 4-D outputs back as NCHW; both are turned to TFLite's NHWC
    here. A ``cv2.dnn.Net`` is not safe to share between threads, hence the lock.
    """

    def __init__(self, path: Path | str | bytes, *, name: str) -> None:
        import cv2

        self.name = name
        data = path if isinstance(path, bytes) else Path(path).read_bytes()
        self._net = cv2.dnn.readNetFromTFLite(np.frombuffer(data, dtype=np.uint8))
        self._outputs = list(self._net.getUnconnectedOutLayersNames())
        self._lock = threading.Lock()

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        blob = np.ascontiguousarray(np.asarray(tensor, dtype=np.float32).transpose(0, 3, 1, 2))
        with self._lock:
            self._net.setInput(blob)
            values = self._net.forward(self._outputs)
        return {name: (v.transpose(0, 2, 3, 1) if v.ndim == 4 else v) for name, v in zip(self._outputs, values,
                                                                                           strict=True)}
