"""MediaPipe's real models: fetched from the mediapipe wheel, converted to ONNX by our code, and held to
OpenCV's TFLite importer running the originals on real photos."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import flatbuffers
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tflite

from core.segmentation.errors import ModelSourceUnavailable
from core.segmentation.mediapipe_source import (
    MEDIAPIPE_VERSION,
    MODEL_INPUT_RANGES,
    MODEL_NAMES,
    fetch_mediapipe_models,
)
from core.segmentation.tflite_onnx import (
    InvalidTFLiteModel,
    UnsupportedTFLiteOperator,
    densify,
    operator_names,
    tflite_to_onnx,
)
from tests import real_assets

UNREACHABLE_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
                     "PIP_NO_CACHE_DIR": "1", "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": ""}


# --- fetching the models and photos -------------------------------------------------------------

def test_models_come_from_the_mediapipe_wheel_with_their_licence() -> None:
    models = real_assets.mediapipe_models()
    assert models.version == MEDIAPIPE_VERSION
    assert models.wheel_name.startswith(f"mediapipe-{MEDIAPIPE_VERSION}-")
    assert len(models.wheel_sha256) == 64
    assert set(models.models) == set(MODEL_NAMES)
    for name in MODEL_NAMES:
        assert models.path(name).read_bytes()[4:8] == b"TFL3"  # the TFLite flatbuffer identifier
    assert "Apache License" in models.licence.read_text(encoding="utf-8")
    with pytest.raises(KeyError, match="no MediaPipe model named 'hair'"):
        models.path("hair")


def test_a_second_fetch_is_served_from_the_cache_without_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    first = real_assets.mediapipe_models()
    for key, value in UNREACHABLE_INDEX.items():
        monkeypatch.setenv(key, value)
    again = fetch_mediapipe_models(real_assets.cache_dir())
    assert again == first


def test_an_unreachable_index_is_a_sentence_and_leaves_nothing_behind(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in UNREACHABLE_INDEX.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ModelSourceUnavailable) as caught:
        fetch_mediapipe_models(tmp_path / "cache", timeout_s=120)
    assert caught.value.source == f"mediapipe=={MEDIAPIPE_VERSION} from the Python package index"
    assert "pip download failed" in str(caught.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_unreachable_registry_skips_and_a_different_file_fails(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATEDIT_TEST_ASSETS", str(tmp_path))

    def unreachable(_: Path) -> bytes:
        raise real_assets._Unreachable("pip download failed (no network)")

    with pytest.raises(pytest.skip.Exception, match="The photo cannot be fetched: pip download failed"):
        real_assets._cached_file("photo.png", "0" * 64, unreachable, "The photo")
    with pytest.raises(AssertionError, match="has sha256"):
        real_assets._cached_file("photo.png", "0" * 64, lambda _: b"other bytes", "The photo")
    assert not (tmp_path / "photo.png").exists()


def test_the_photos_are_real_rgb_images() -> None:
    astronaut = real_assets.astronaut_rgb()
    messi = real_assets.messi_rgb()
    assert astronaut.shape == (512, 512, 3) and astronaut.dtype == np.uint8
    assert messi.shape == (342, 548, 3) and messi.dtype == np.uint8
    assert real_assets.astronaut_png_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert real_assets.messi_jpeg_bytes()[:2] == b"\xff\xd8"


# --- the converter against OpenCV's TFLite importer running the originals ---------------------------

#: The models OpenCV's importer can run; the other two hold sparse weights (DENSIFY), which it cannot read.
CONVERTED_MODELS = ("selfie_segmentation", "selfie_segmentation_landscape", "face_detection_short_range",
                    "face_landmark", "pose_landmark_full", "iris_landmark")
SPARSE_MODELS = ("pose_detection", "face_detection_full_range_sparse")
PHOTOS = ("astronaut", "messi")
#: Float32 noise grows with a tensor's magnitude (logits in the thousands, landmarks in pixels), so the two
#: runtimes may differ by this fraction of an output's largest value (by this much absolutely below 1).
#: The TFLite interpreter itself (LiteRT) and OpenCV differ by up to about 1.6e-4 of that scale on these
#: models and photos; the conversion stays as close to LiteRT as OpenCV does.
TOLERANCE = 1e-4
#: The landscape selfie model (not used by the embedded segmenter) lands a hair above on one photo.
TOLERANCE_OF = {"selfie_segmentation_landscape": 2e-4}


@functools.cache
def converted(name: str) -> onnx.ModelProto:
    return tflite_to_onnx(real_assets.mediapipe_models().path(name).read_bytes(), model_name=name)


@functools.cache
def onnx_session(name: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(converted(name).SerializeToString(), options, providers=["CPUExecutionProvider"])


@functools.cache
def opencv_net(name: str) -> cv2.dnn.Net:
    return cv2.dnn.readNetFromTFLite(str(real_assets.mediapipe_models().path(name)))


Interface = list[tuple[str, tuple[int, ...], int]]


def tflite_interface(name: str) -> tuple[Interface, Interface]:
    """(name, shape, TFLite type) of the original model's inputs and outputs, read straight from the flatbuffer."""
    model = tflite.Model.GetRootAsModel(real_assets.mediapipe_models().path(name).read_bytes(), 0)
    graph = model.Subgraphs(0)

    def describe(index: int) -> tuple[str, tuple[int, ...], int]:
        tensor = graph.Tensors(index)
        return tensor.Name().decode(), tuple(int(d) for d in tensor.ShapeAsNumpy()), tensor.Type()

    return ([describe(graph.Inputs(i)) for i in range(graph.InputsLength())],
            [describe(graph.Outputs(i)) for i in range(graph.OutputsLength())])


def model_input(photo: str, name: str) -> np.ndarray:
    """The photo centre-cropped to the model's aspect, resized to its input and scaled to its float range."""
    rgb = real_assets.astronaut_rgb() if photo == "astronaut" else real_assets.messi_rgb()
    (_, (_, height, width, _), _), = tflite_interface(name)[0]
    scale = min(rgb.shape[0] / height, rgb.shape[1] / width)
    crop_h, crop_w = round(height * scale), round(width * scale)
    top, left = (rgb.shape[0] - crop_h) // 2, (rgb.shape[1] - crop_w) // 2
    pixels = cv2.resize(rgb[top:top + crop_h, left:left + crop_w], (width, height), interpolation=cv2.INTER_AREA)
    low, high = MODEL_INPUT_RANGES[name]
    return (pixels.astype(np.float32) / 255 * (high - low) + low)[None]


def run_both(name: str, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each output as (onnxruntime on our ONNX, OpenCV on the TFLite original), both in NHWC."""
    session = onnx_session(name)
    output_names = [o.name for o in session.get_outputs()]
    ours = session.run(None, {session.get_inputs()[0].name: x})
    net = opencv_net(name)
    net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # OpenCV's importer takes NCHW blobs
    theirs = net.forward(output_names)  # and returns 4-D outputs in NCHW
    return {n: (a, b.transpose(0, 2, 3, 1) if b.ndim == 4 else b)
            for n, a, b in zip(output_names, ours, theirs, strict=True)}


@pytest.mark.parametrize("name", CONVERTED_MODELS + SPARSE_MODELS)
def test_the_onnx_model_has_the_tflite_models_inputs_and_outputs(name: str) -> None:
    model = converted(name)
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    inputs, outputs = tflite_interface(name)

    def describe(values: list[onnx.ValueInfoProto]) -> Interface:
        return [(v.name, tuple(d.dim_value for d in v.type.tensor_type.shape.dim), v.type.tensor_type.elem_type)
                for v in values]

    assert describe(list(model.graph.input)) == [(n, s, onnx.TensorProto.FLOAT) for n, s, t in inputs]
    assert describe(list(model.graph.output)) == [(n, s, onnx.TensorProto.FLOAT) for n, s, t in outputs]
    assert all(t == tflite.TensorType.FLOAT32 for _, _, t in inputs + outputs)
    props = {p.key: p.value for p in model.metadata_props}
    data = real_assets.mediapipe_models().path(name).read_bytes()
    assert props["source_model"] == name
    assert props["source_sha256"] == hashlib.sha256(data).hexdigest()
    # Weights are float32 initializers; nothing of TFLite's float16 storage is left in the graph.
    assert {i.data_type for i in model.graph.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    assert not any(n.op_type == "Cast" for n in model.graph.node)
    # NCHW inside: a transpose after each 4-D input and before each 4-D output, and few others.
    four_d = sum(len(s) == 4 for _, s, _ in inputs + outputs)
    transposes = sum(n.op_type == "Transpose" for n in model.graph.node)
    reshapes_of_4d = sum(n.op_type == "Reshape" for n in model.graph.node)
    assert transposes <= four_d + reshapes_of_4d


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("name", CONVERTED_MODELS)
def test_onnxruntime_on_the_conversion_matches_opencv_on_the_original(name: str, photo: str) -> None:
    results = run_both(name, model_input(photo, name))
    for output, (ours, theirs) in results.items():
        assert ours.shape == theirs.shape, output
        scale = max(1.0, float(np.abs(theirs).max()))
        difference = float(np.abs(ours - theirs).max())
        tolerance = TOLERANCE_OF.get(name, TOLERANCE)
        assert difference <= tolerance * scale, f"{name} {output} on {photo}: {difference} > {tolerance} × {scale}"


def test_the_models_see_what_a_person_sees() -> None:
    mask = onnx_session("selfie_segmentation").run(None, {"input_1": model_input("astronaut", "selfie_segmentation")})
    person = mask[0][0, ..., 0]
    assert person[120:136, 120:136].mean() > 0.9  # the astronaut fills the middle of the portrait
    assert person[:16, :16].mean() < 0.1  # the top-left corner is background
    _, scores = onnx_session("face_detection_short_range").run(
        None, {"input": model_input("astronaut", "face_detection_short_range")})
    assert 1 / (1 + np.exp(-scores.max())) > 0.5  # one face found
    _, presence, *_ = onnx_session("pose_landmark_full").run(
        None, {"input_1": model_input("messi", "pose_landmark_full")})
    assert presence.item() > 0.5  # a body in the football photo


@pytest.mark.parametrize(("name", "photo"), [("pose_detection", "messi"), ("pose_detection", "astronaut"),
                                             ("face_detection_full_range_sparse", "astronaut")])
def test_the_sparse_models_find_what_a_person_sees(name: str, photo: str) -> None:
    """OpenCV cannot run these; what they find (a body, a face) shows their densified weights are right."""
    session = onnx_session(name)
    _, scores = session.run(None, {session.get_inputs()[0].name: model_input(photo, name)})
    assert 1 / (1 + np.exp(-scores.max())) > 0.7


def test_densify_reads_tflite_sparse_storage() -> None:
    dense = np.array([[0, 1, 0, 2], [0, 0, 0, 0], [3, 0, 4, 0]], dtype=np.float16)
    # Rows dense, columns compressed (CSR), traversed row-major.
    row_major = densify(np.array([1, 2, 3, 4], dtype=np.float16), dense.shape, [0, 1],
                        [3, (np.array([0, 2, 2, 4]), np.array([1, 3, 0, 2]))])
    np.testing.assert_array_equal(row_major, dense)
    # Columns first (CSC): the stored values follow the traversal order.
    column_major = densify(np.array([3, 1, 4, 2], dtype=np.float16), dense.shape, [1, 0],
                           [4, (np.array([0, 1, 2, 3, 4]), np.array([2, 0, 2, 0]))])
    np.testing.assert_array_equal(column_major, dense)
    with pytest.raises(ValueError, match="stores 3 values but its indices address 4"):
        densify(np.array([1, 2, 3], dtype=np.float16), dense.shape, [0, 1],
                [3, (np.array([0, 2, 2, 4]), np.array([1, 3, 0, 2]))])


def test_speed_against_opencv_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """A sanity figure printed with the test output, never asserted: the runs share the machine with others."""
    lines = [speed_line(name) for name in CONVERTED_MODELS]
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def speed_line(name: str) -> str:
    x = model_input("astronaut", name)
    session, net = onnx_session(name), opencv_net(name)
    feed = {session.get_inputs()[0].name: x}
    blob = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    outputs = net.getUnconnectedOutLayersNames()

    def opencv_run() -> None:
        net.setInput(blob)
        net.forward(outputs)

    ours = median_ms(lambda: session.run(None, feed))
    theirs = median_ms(opencv_run)
    return f"{name:32s} onnxruntime {ours:7.2f} ms   OpenCV {theirs:7.2f} ms   ×{theirs / ours:4.1f}"


def median_ms(run: Callable[[], object], repeats: int = 15) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


# --- what the converter refuses -------------------------------------------------------------------

def tiny_tflite(builtin_code: int, custom_code: str | None = None) -> bytes:
    """A one-operator TFLite model (x[1,4] → op → y[1,4]), written with the schema's own flatbuffer builders."""
    builder = flatbuffers.Builder(1024)

    def int_vector(start: Callable[[flatbuffers.Builder, int], object], values: list[int]) -> int:
        start(builder, len(values))
        for value in reversed(values):
            builder.PrependInt32(value)
        return builder.EndVector()

    def offset_vector(start: Callable[[flatbuffers.Builder, int], object], offsets: list[int]) -> int:
        start(builder, len(offsets))
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    tensors = []
    for index, name in enumerate(["x", "y"]):
        name_offset = builder.CreateString(name)
        shape = int_vector(tflite.TensorStartShapeVector, [1, 4])
        tflite.TensorStart(builder)
        tflite.TensorAddShape(builder, shape)
        tflite.TensorAddType(builder, tflite.TensorType.FLOAT32)
        tflite.TensorAddBuffer(builder, index + 1)
        tflite.TensorAddName(builder, name_offset)
        tensors.append(tflite.TensorEnd(builder))
    op_inputs = int_vector(tflite.OperatorStartInputsVector, [0])
    op_outputs = int_vector(tflite.OperatorStartOutputsVector, [1])
    tflite.OperatorStart(builder)
    tflite.OperatorAddOpcodeIndex(builder, 0)
    tflite.OperatorAddInputs(builder, op_inputs)
    tflite.OperatorAddOutputs(builder, op_outputs)
    operator = tflite.OperatorEnd(builder)
    graph_tensors = offset_vector(tflite.SubGraphStartTensorsVector, tensors)
    graph_inputs = int_vector(tflite.SubGraphStartInputsVector, [0])
    graph_outputs = int_vector(tflite.SubGraphStartOutputsVector, [1])
    graph_operators = offset_vector(tflite.SubGraphStartOperatorsVector, [operator])
    tflite.SubGraphStart(builder)
    tflite.SubGraphAddTensors(builder, graph_tensors)
    tflite.SubGraphAddInputs(builder, graph_inputs)
    tflite.SubGraphAddOutputs(builder, graph_outputs)
    tflite.SubGraphAddOperators(builder, graph_operators)
    subgraph = tflite.SubGraphEnd(builder)
    custom = builder.CreateString(custom_code) if custom_code else None
    tflite.OperatorCodeStart(builder)
    tflite.OperatorCodeAddBuiltinCode(builder, builtin_code)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, min(builtin_code, 127))
    if custom is not None:
        tflite.OperatorCodeAddCustomCode(builder, custom)
    tflite.OperatorCodeAddVersion(builder, 1)
    opcode = tflite.OperatorCodeEnd(builder)
    buffers = []
    for _ in range(3):
        tflite.BufferStart(builder)
        buffers.append(tflite.BufferEnd(builder))
    model_opcodes = offset_vector(tflite.ModelStartOperatorCodesVector, [opcode])
    model_subgraphs = offset_vector(tflite.ModelStartSubgraphsVector, [subgraph])
    model_buffers = offset_vector(tflite.ModelStartBuffersVector, buffers)
    tflite.ModelStart(builder)
    tflite.ModelAddVersion(builder, 3)
    tflite.ModelAddOperatorCodes(builder, model_opcodes)
    tflite.ModelAddSubgraphs(builder, model_subgraphs)
    tflite.ModelAddBuffers(builder, model_buffers)
    builder.Finish(tflite.ModelEnd(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_tiny_model_of_a_supported_operator_converts_and_runs() -> None:
    model = tflite_to_onnx(tiny_tflite(tflite.BuiltinOperator.LOGISTIC), model_name="tiny")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.array([[-2.0, 0.0, 1.0, 3.0]], dtype=np.float32)
    (y,) = session.run(["y"], {"x": x})
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x)), rtol=1e-6)


def test_an_unsupported_builtin_operator_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedTFLiteOperator) as caught:
        tflite_to_onnx(tiny_tflite(tflite.BuiltinOperator.FLOOR), model_name="tiny")
    assert caught.value.operator == "FLOOR"
    assert caught.value.model_name == "tiny"
    assert str(caught.value) == ("The TFLite model 'tiny' uses the operator FLOOR, which the ONNX converter "
                                 "does not support.")


def test_an_unsupported_custom_operator_is_refused_by_its_name() -> None:
    data = tiny_tflite(tflite.BuiltinOperator.CUSTOM, custom_code="MaxPoolingWithArgmax2D")
    assert operator_names(data) == ["MaxPoolingWithArgmax2D"]
    with pytest.raises(UnsupportedTFLiteOperator, match="uses the operator MaxPoolingWithArgmax2D"):
        tflite_to_onnx(data, model_name="tiny")


def test_bytes_that_are_not_tflite_are_refused() -> None:
    with pytest.raises(InvalidTFLiteModel, match="does not carry the TFLite file identifier"):
        tflite_to_onnx(b"\x89PNG\r\n\x1a\n" + bytes(64), model_name="picture")
