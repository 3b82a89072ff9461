"""Face swap (the thesis' roop feature): the insightface models called directly with onnxruntime.

insightface 2.1 installs as a wheel, but it pulls ``opencv-python`` (the GUI build),
which overwrites the ``cv2`` of our ``opencv-python-headless``; so instead of its
``FaceAnalysis`` + ``INSwapper`` classes this module makes the same three model calls
itself, with the same pre- and post-processing: SCRFD detection (``det_*.onnx`` in
CHATEDIT_FACE_ANALYSIS_DIR, e.g. buffalo_l), ArcFace recognition (the other ``.onnx``
there, 112×112 input) and the inswapper (CHATEDIT_FACE_SWAP_MODEL, 128×128, whose last
initializer is the embedding map). The largest face of each image is used by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.generative.errors import GenerationFailed, NoFaceFound

#: ArcFace's five landmarks (eyes, nose, mouth corners) in a 112×112 crop.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
STRIDES = (8, 16, 32)
ANCHORS = 2


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # 5×2

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


class FaceModelsMissing(GenerationFailed):
    def __init__(self, what: str) -> None:
        super().__init__(f"Face swap needs {what}.")


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), options, providers=providers)


class FaceSwapper:
    """Detector, recognizer and swapper sessions, loaded once per worker."""

    def __init__(self, analysis_dir: Path | None, swap_model: Path | None, *, det_size: int = 640,
                 det_threshold: float = 0.5) -> None:
        if analysis_dir is None or not Path(analysis_dir).is_dir():
            raise FaceModelsMissing("the insightface model folder (e.g. buffalo_l with det_10g.onnx and "
                                    "w600k_r50.onnx); set CHATEDIT_FACE_ANALYSIS_DIR")
        if swap_model is None or not Path(swap_model).is_file():
            raise FaceModelsMissing("the inswapper model (inswapper_128.onnx); set CHATEDIT_FACE_SWAP_MODEL")
        files = sorted(Path(analysis_dir).glob("*.onnx"))
        detector = next((f for f in files if f.name.startswith("det_")), None)
        recognizer = next((f for f in files if f != detector and not f.name.startswith(("1k3d", "2d106", "genderage"))), None)
        if detector is None or recognizer is None:
            raise FaceModelsMissing(f"a det_*.onnx detector and a recognition model in {analysis_dir}")
        self.detector, self.recognizer, self.swapper = _session(detector), _session(recognizer), _session(swap_model)
        self.det_threshold = det_threshold
        shape = self.detector.get_inputs()[0].shape
        self.det_size = int(shape[2]) if isinstance(shape[2], int) else det_size
        import onnx
        from onnx import numpy_helper

        self.emap = numpy_helper.to_array(onnx.load(str(swap_model)).graph.initializer[-1]).astype(np.float32)

    # -- the three model calls ------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[Face]:
        """SCRFD: faces with boxes and five landmarks, best first."""
        size = self.det_size
        scale = size / max(image.shape[:2])
        resized = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))))
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[:resized.shape[0], :resized.shape[1]] = resized
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = self.detector.run(None, {self.detector.get_inputs()[0].name: blob})
        faces = []
        for i, stride in enumerate(STRIDES):
            scores, boxes, kps = (np.asarray(outputs[i + k * len(STRIDES)]).reshape(-1, d)
                                  for k, d in ((0, 1), (1, 4), (2, 10)))
            h, w = size // stride, size // stride
            centers = np.stack(np.mgrid[:h, :w][::-1], axis=-1).reshape(-1, 2).astype(np.float32) * stride
            centers = np.repeat(centers, ANCHORS, axis=0)
            for j in np.nonzero(scores[:, 0] >= self.det_threshold)[0]:
                c, d = centers[j], boxes[j] * stride
                box = np.array([c[0] - d[0], c[1] - d[1], c[0] + d[2], c[1] + d[3]]) / scale
                landmarks = (c + kps[j].reshape(5, 2) * stride) / scale
                faces.append(Face(box, float(scores[j, 0]), landmarks))
        return _nms(faces)

    def embed(self, image: np.ndarray, face: Face) -> np.ndarray:
        """ArcFace: the identity embedding of a face, L2-normalised."""
        crop = _align(image, face.landmarks, 112)
        blob = ((crop.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        embedding = np.asarray(self.recognizer.run(None, {self.recognizer.get_inputs()[0].name: blob})[0]).reshape(-1)
        return embedding / max(float(np.linalg.norm(embedding)), 1e-12)

    def swap(self, target: np.ndarray, target_face: Face, identity: np.ndarray) -> np.ndarray:
        """inswapper: the target face repainted with ``identity``, pasted back with a feathered edge."""
        size = 128
        matrix = _similarity(target_face.landmarks, size)
        crop = cv2.warpAffine(target, matrix, (size, size), borderValue=0.0)
        latent = identity.reshape(1, -1) @ self.emap
        latent /= max(float(np.linalg.norm(latent)), 1e-12)
        names = [i.name for i in self.swapper.get_inputs()]
        feeds = {names[0]: (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None],
                 names[1]: latent.astype(np.float32)}
        swapped = np.asarray(self.swapper.run(None, feeds)[0])[0].transpose(1, 2, 0)
        swapped = np.clip(swapped * 255.0, 0, 255).astype(np.uint8)
        inverse = cv2.invertAffineTransform(matrix)
        h, w = target.shape[:2]
        pasted = cv2.warpAffine(swapped, inverse, (w, h), borderValue=0.0)
        region = cv2.warpAffine(np.full((size, size), 255, np.uint8), inverse, (w, h), borderValue=0)
        edge = max(1, int(np.sqrt(region.astype(bool).sum()) / 10))
        region = cv2.erode(region, np.ones((edge, edge), np.uint8))
        alpha = cv2.GaussianBlur(region.astype(np.float32) / 255.0, (0, 0), edge / 2)
        alpha[region == 0] = np.minimum(alpha[region == 0], 0)
        a = alpha[..., None]
        out = np.rint(target.astype(np.float32) * (1 - a) + pasted.astype(np.float32) * a).astype(np.uint8)
        return np.where(a > 0, out, target)

    # -- the feature ------------------------------------------------------------------

    def swap_largest(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Put the largest face of ``source`` onto the largest face of ``target``."""
        source_faces, target_faces = self.detect(source), self.detect(target)
        if not source_faces:
            raise NoFaceFound("source image (the face to use)")
        if not target_faces:
            raise NoFaceFound("target image")
        source_face = max(source_faces, key=lambda f: f.area)
        target_face = max(target_faces, key=lambda f: f.area)
        return self.swap(target, target_face, self.embed(source, source_face))


def _similarity(landmarks: np.ndarray, size: int) -> np.ndarray:
    template = ARCFACE_TEMPLATE * (size / 112.0)
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), template, method=cv2.LMEDS)
    if matrix is None:
        raise GenerationFailed("The face's landmarks are degenerate; it cannot be aligned.")
    return matrix


def _align(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(image, _similarity(landmarks, size), (size, size), borderValue=0.0)


def _nms(faces: list[Face], threshold: float = 0.4) -> list[Face]:
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(_iou(face.box, k.box) < threshold for k in kept):
            kept.append(face)
    return kept


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
