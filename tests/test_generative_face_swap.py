"""swap_face through the worker, on tiny ONNX models with insightface's input/output signatures built here.

The detector scores each anchor by the local brightness of the input (a bright patch is
a "face"), with fixed box and landmark offsets; the recognizer averages colour into a
512-d embedding; the swapper paints the crop one colour decided by the source latent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.settings import load_settings
from db.migrate import upgrade
from jobs.handlers.swap_face import submit_swap_face
from jobs.histories import history_steps, start_history
from jobs.images import image_rgb, store_array
from jobs.queue import JobStatus
from jobs.services import Services
from tests.conftest import running_worker

DET = 64


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _detector(path: Path) -> None:
    nodes, inits = [helper.make_node("ReduceMean", ["input.1"], ["gray"], axes=[1], keepdims=1)], []
    inits.append(numpy_helper.from_array(np.array([-1, 1], np.int64), "shape_score"))
    kps_unit = np.array([-0.5, -0.4, 0.5, -0.4, 0.0, 0.0, -0.4, 0.5, 0.4, 0.5], np.float32)
    scores, boxes, kps = [], [], []
    for stride in (8, 16, 32):
        n = (DET // stride) ** 2 * 2
        nodes += [
            helper.make_node("AveragePool", ["gray"], [f"pool{stride}"], kernel_shape=[stride, stride], strides=[stride, stride]),
            helper.make_node("Transpose", [f"pool{stride}"], [f"t{stride}"], perm=[0, 2, 3, 1]),
            helper.make_node("Concat", [f"t{stride}", f"t{stride}"], [f"c{stride}"], axis=3),
            helper.make_node("Reshape", [f"c{stride}", "shape_score"], [f"score_{stride}"]),
            helper.make_node("Constant", [], [f"bbox_{stride}"], value=numpy_helper.from_array(np.full((n, 4), 1.0, np.float32))),
            helper.make_node("Constant", [], [f"kps_{stride}"], value=numpy_helper.from_array(np.tile(kps_unit, (n, 1)))),
        ]
        scores.append(helper.make_tensor_value_info(f"score_{stride}", TensorProto.FLOAT, [n, 1]))
        boxes.append(helper.make_tensor_value_info(f"bbox_{stride}", TensorProto.FLOAT, [n, 4]))
        kps.append(helper.make_tensor_value_info(f"kps_{stride}", TensorProto.FLOAT, [n, 10]))
    graph = helper.make_graph(nodes, "scrfd-tiny", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, DET, DET])],
                              scores + boxes + kps, inits)
    _save(graph, path)


def _recognizer(path: Path) -> None:
    weights = np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["683"])],
        "arcface-tiny", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])], [numpy_helper.from_array(weights, "w")])
    _save(graph, path)


def _swapper(path: Path) -> None:
    rng = np.random.default_rng(1)
    colour = rng.normal(size=(512, 3)).astype(np.float32) * 4
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["source", "colour"], ["rgb"]), helper.make_node("Sigmoid", ["rgb"], ["rgb01"]),
         helper.make_node("Reshape", ["rgb01", "shape"], ["rgb4"]),
         helper.make_node("Mul", ["target", "zero"], ["blank"]), helper.make_node("Add", ["blank", "rgb4"], ["output"])],
        "inswapper-tiny",
        [helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
         helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])],
        [numpy_helper.from_array(colour, "colour"), numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "shape"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
         numpy_helper.from_array(rng.normal(size=(512, 512)).astype(np.float32), "emap")],  # last: the embedding map
    )
    _save(graph, path)


def face_swap_services(tmp_path: Path) -> Iterator[Services]:
    """Services on a fresh SQLite database whose face swap uses tiny random-weight models written to ``tmp_path``."""
    analysis = tmp_path / "buffalo_tiny"
    analysis.mkdir()
    _detector(analysis / "det_tiny.onnx")
    _recognizer(analysis / "w600k_tiny.onnx")
    _swapper(tmp_path / "inswapper_tiny.onnx")
    settings = load_settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'chatedit.db'}",
                             worker_poll_seconds=0.1, face_analysis_dir=analysis,
                             face_swap_model=tmp_path / "inswapper_tiny.onnx")
    svc = Services.from_settings(settings)
    upgrade(svc.database)
    yield svc
    svc.close()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    yield from face_swap_services(tmp_path)


def _portrait(bright: tuple[slice, slice] | None, size: int = 96) -> np.ndarray:
    image = np.full((size, size, 3), 20, np.uint8)
    if bright is not None:
        image[bright] = 250
    return image


def _swap(services: Services, source: np.ndarray, target: np.ndarray, **kwargs: object):
    source_id, target_id = store_array(services, source).id, store_array(services, target).id
    job_id = submit_swap_face(services, source_image_id=source_id, target_image_id=target_id, **kwargs)  # type: ignore[arg-type]
    with running_worker(services, lanes=["gpu"]):
        return services.queue.wait(job_id, timeout_s=60)


def test_the_largest_face_is_swapped_and_the_rest_kept(services: Services) -> None:
    target = _portrait((slice(24, 72), slice(24, 72)))
    target_id = store_array(services, target).id
    history = start_history(services, target_id)
    source_id = store_array(services, _portrait((slice(10, 60), slice(30, 80)))).id
    job_id = submit_swap_face(services, source_image_id=source_id, target_image_id=target_id,
                              history_id=history.history_id, parent_step_id=history.root_step_id)
    with running_worker(services, lanes=["gpu"]):
        job = services.queue.wait(job_id, timeout_s=60)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    swapped = image_rgb(services, job.result["image_id"])
    assert not np.array_equal(swapped[40:56, 40:56], target[40:56, 40:56])  # the big face changed
    assert np.array_equal(swapped[80:, :], target[80:, :]) and np.array_equal(swapped[:, 80:], target[:, 80:])
    assert history_steps(services, history.history_id)[-1].image_id == job.result["image_id"]


@pytest.mark.parametrize("which", ["source", "target"])
def test_no_face_is_a_clear_sentence(services: Services, which: str) -> None:
    face, blank = _portrait((slice(24, 72), slice(24, 72))), _portrait(None)
    job = _swap(services, blank if which == "source" else face, blank if which == "target" else face)
    assert job.status is JobStatus.FAILED
    assert job.error_message.startswith(f"No face was found in the {which} image")
