"""What the segmentation tests share (no tests of its own): a hand-built ONNX segmenter and a drawn person.

The segmenter is one ONNX ``Conv`` (1×1): label k's logit is ``2·x·c_k − |c_k|²`` for
its colour ``c_k``, so the argmax is the nearest label colour. The person is drawn as a
label map first and coloured from it with a little noise, so every test knows exactly
which pixel belongs to which label.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.segmentation import Preprocessing, SegmenterMetadata, write_metadata

LABELS = ("Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
          "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf")
ID = {name: i for i, name in enumerate(LABELS)}
#: A distinct colour per label (RGB), at least 60 apart in some channel from every other.
COLOURS = np.array([
    [235, 235, 235], [120, 0, 120], [60, 30, 0], [0, 0, 0], [200, 30, 30], [240, 140, 0], [0, 60, 140],
    [30, 30, 220], [140, 140, 0], [0, 120, 0], [0, 200, 120], [240, 190, 150], [120, 120, 255], [255, 120, 255],
    [180, 90, 60], [90, 180, 60], [0, 200, 240], [255, 255, 0],
], dtype=np.uint8)
SIZE = 128
NOISE = 8


def build_colour_segmenter(path: Path, *, model_id: str = "colours@000000000001",
                           colours: np.ndarray = COLOURS, labels: tuple[str, ...] = LABELS) -> Path:
    """Write a nearest-colour segmenter with our metadata; input is rescaled to [0, 1], not resized."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    centres = colours.astype(np.float32) / 255.0
    weight = (2.0 * centres)[:, :, None, None]
    bias = -(centres ** 2).sum(axis=1)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixel_values", "weight", "bias"], ["logits"], kernel_shape=[1, 1])],
        "nearest_colour",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(labels), "height", "width"])],
        [numpy_helper.from_array(weight.astype(np.float32), "weight"),
         numpy_helper.from_array(bias.astype(np.float32), "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    write_metadata(model, SegmenterMetadata(
        model_id=model_id, source="hand-built", label_names=labels,
        preprocessing=Preprocessing(do_resize=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=False)))
    onnx.save(model, str(path))
    return path


def person_labels(size: int = SIZE) -> np.ndarray:
    """Hair around a face, a torso with arms, a dress, a separate lock of hair, and a one-pixel bag (a speck)."""
    labels = np.zeros((size, size), dtype=np.uint8)
    s = size / 128

    def ellipse(name: str, cx: float, cy: float, ax: float, ay: float) -> None:
        cv2.ellipse(labels, (round(cx * s), round(cy * s)), (round(ax * s), round(ay * s)), 0, 0, 360, ID[name],
                    thickness=-1, lineType=cv2.LINE_8)

    def box(name: str, x0: float, y0: float, x1: float, y1: float) -> None:
        labels[round(y0 * s):round(y1 * s), round(x0 * s):round(x1 * s)] = ID[name]

    ellipse("Hair", 64, 28, 19, 21)
    ellipse("Face", 64, 32, 13, 15)
    box("Upper-clothes", 42, 50, 86, 80)
    box("Left-arm", 32, 50, 42, 88)
    box("Right-arm", 86, 50, 96, 88)
    box("Dress", 45, 80, 83, 120)
    ellipse("Hair", 104, 20, 6, 9)
    labels[5, 5] = ID["Bag"]
    return labels


def paint(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """An RGB picture of a label map: each label's colour plus uniform noise of ±NOISE."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-NOISE, NOISE + 1, size=(*labels.shape, 3))
    return np.clip(COLOURS[labels].astype(np.int16) + noise, 0, 255).astype(np.uint8)
