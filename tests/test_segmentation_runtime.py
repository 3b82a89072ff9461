"""The ONNX runtime on a hand-built segmenter: exact label maps, providers, shared sessions, errors, `chatedit segment`."""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from app.cli import cli
from core.segmentation import (
    InvalidSegmenter,
    SegmenterNotFound,
    decode_label_map,
    encode_label_map,
    load_segmenter,
    read_metadata,
    upsample_argmax,
)
from core.segmentation.label_maps import InvalidLabelMap
from core.segmentation.runtime import CPU, CUDA, choose_providers
from tests.test_segmentation_support import (
    ID,
    LABELS,
    build_colour_segmenter,
    paint,
    person_labels,
)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_colour_segmenter(tmp_path_factory.mktemp("models") / "colours.onnx")


def test_the_label_map_is_exactly_the_drawn_one_and_specks_are_not_present(colour_model: Path) -> None:
    labels = person_labels()
    result = load_segmenter(colour_model).segment(paint(labels))
    assert result.label_map.shape == labels.shape
    assert np.array_equal(result.label_map, labels)
    assert result.label_names == LABELS
    assert result.present == ("Background", "Hair", "Upper-clothes", "Dress", "Face", "Left-arm", "Right-arm")
    assert "Bag" not in result.shares  # one pixel of 16,384: a speck under 0.1%
    counts = np.bincount(labels.ravel(), minlength=len(LABELS))
    for name, share in result.shares.items():
        assert share == pytest.approx(counts[ID[name]] / labels.size)
    assert result.label_entries()[1] == {"name": "Hair", "id": ID["Hair"],
                                         "share": round(counts[ID["Hair"]] / labels.size, 6)}


def test_providers_put_cuda_first_only_where_it_exists_and_the_session_logs_its_provider(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert choose_providers([CUDA, "TensorrtExecutionProvider", CPU]) == [CUDA, CPU]
    assert choose_providers([CPU]) == [CPU]
    path = build_colour_segmenter(tmp_path / "logged.onnx")
    with caplog.at_level(logging.INFO, logger="core.segmentation.runtime"):
        segmenter = load_segmenter(path)
    assert segmenter.provider in (CUDA, CPU)
    assert f"on {segmenter.provider}" in caplog.text


def test_sessions_are_shared_by_threads_and_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = build_colour_segmenter(tmp_path / "shared.onnx", model_id="first@000000000001")
    first = load_segmenter(path)
    assert load_segmenter(str(path)) is first
    image = paint(person_labels())
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(5):
                results.append(load_segmenter(path).segment(image).label_map)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 20
    assert all(np.array_equal(r, person_labels()) for r in results)

    build_colour_segmenter(path, model_id="second@000000000002")
    second = load_segmenter(path)
    assert second is not first and second.model_id == "second@000000000002"
    assert read_metadata(path).model_id == "second@000000000002"


def test_a_missing_or_foreign_file_is_refused_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(SegmenterNotFound, match="There is no segmenter at .*CHATEDIT_SEGMENTER"):
        load_segmenter(tmp_path / "nowhere.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(InvalidSegmenter, match="cannot be used as a segmenter: it is not an ONNX model"):
        load_segmenter(junk)

    import onnx

    bare = onnx.load(str(build_colour_segmenter(tmp_path / "bare.onnx")))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(InvalidSegmenter, match="it has no ChatEdit metadata .*export-segmenter"):
        load_segmenter(tmp_path / "bare.onnx")


def test_upsampling_matches_torch_bilinear_then_argmax() -> None:
    import torch

    logits = torch.randn(1, 18, 32, 48, generator=torch.Generator().manual_seed(0)) * 4
    for height, width in [(128, 192), (77, 301), (20, 30), (32, 48)]:
        expected = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear",
                                                   align_corners=False).argmax(1)[0].numpy()
        got = upsample_argmax(logits[0].numpy(), height, width)
        assert got.shape == (height, width)
        assert (got == expected).mean() >= 0.999  # float rounding may flip a near-tie


def test_label_map_pngs_carry_their_names_and_open_in_any_viewer() -> None:
    labels = person_labels()
    data = encode_label_map(labels, LABELS)
    with Image.open(io.BytesIO(data)) as png:
        assert png.mode == "P"  # a palette: each label shows in its own colour
    decoded, names = decode_label_map(data)
    assert np.array_equal(decoded, labels) and names == LABELS
    many = np.arange(300 * 4, dtype=np.int64).reshape(40, 30) % 300
    decoded, names = decode_label_map(encode_label_map(many, [f"l{i}" for i in range(300)]))
    assert np.array_equal(decoded, many) and len(names) == 300
    with pytest.raises(InvalidLabelMap, match="ids outside 0..1"):
        encode_label_map(labels, LABELS[:2])
    plain = io.BytesIO()
    Image.fromarray(labels).save(plain, format="PNG")
    with pytest.raises(InvalidLabelMap, match="carries no label names"):
        decode_label_map(plain.getvalue())


# ------------------------------------------------------------------ chatedit segment


def _cli(env: dict[str, str | None], *args: str):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    monkeypatch.chdir(tmp_path)  # no chatedit.toml of the developer's
    return {"CHATEDIT_DATA_DIR": str(tmp_path / "data"), "CHATEDIT_SEGMENTER": None, "CHATEDIT_CONFIG": None}


def _png(tmp_path: Path) -> Path:
    path = tmp_path / "person.png"
    Image.fromarray(paint(person_labels())).save(path)
    return path


def test_segment_prints_the_labels_and_writes_the_label_map(tmp_path: Path, colour_model: Path,
                                                            cli_env: dict[str, str | None]) -> None:
    image = _png(tmp_path)
    plain = _cli(cli_env, "segment", str(image), "--segmenter", str(colour_model))
    assert plain.exit_code == 0, plain.output
    assert "Upper-clothes" in plain.output and "Bag" not in plain.output

    out = tmp_path / "labels.png"
    env = {**cli_env, "CHATEDIT_SEGMENTER": str(colour_model)}
    result = _cli(env, "segment", str(image), "--json", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [entry["name"] for entry in data["labels"]] == ["Background", "Hair", "Upper-clothes", "Dress", "Face",
                                                           "Left-arm", "Right-arm"]
    assert data["model_id"] == "colours@000000000001" and (data["width"], data["height"]) == (128, 128)
    label_map, names = decode_label_map(out.read_bytes())
    assert np.array_equal(label_map, person_labels()) and names == LABELS


def test_segment_errors_are_sentences(tmp_path: Path, colour_model: Path, cli_env: dict[str, str | None]) -> None:
    image = _png(tmp_path)
    unset = _cli(cli_env, "segment", str(image))
    assert unset.exit_code == 1 and "CHATEDIT_SEGMENTER" in unset.output
    missing = _cli(cli_env, "segment", str(image), "--segmenter", str(tmp_path / "none.onnx"))
    assert missing.exit_code == 1 and "There is no segmenter at" in missing.output
    text = tmp_path / "notes.png"
    text.write_text("hello")
    rejected = _cli(cli_env, "segment", str(text), "--segmenter", str(colour_model))
    assert rejected.exit_code == 1 and rejected.output.startswith("Error: ") and rejected.output.count("\n") == 1
