"""`chatedit models export-segmenter` on a tiny random SegFormer: ONNX agrees with PyTorch, metadata round-trips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from app.cli import cli
from core.segmentation import (
    Preprocessing,
    SegmenterMetadata,
    load_segmenter,
    preprocess,
    read_metadata,
)
from core.segmentation.metadata import write_metadata

ROOT = Path(__file__).parents[1]
LABELS = ("Background", "Hair", "Upper-clothes", "Face", "Dress")
PROCESSOR_SIZE = {"height": 64, "width": 96}


def _tiny_segformer():  # type: ignore[no-untyped-def]
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
        num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    return SegformerForSemanticSegmentation(config).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, Path, str]:
    """A tiny SegFormer saved with save_pretrained, exported once by the real command."""
    from transformers import SegformerImageProcessor

    root = tmp_path_factory.mktemp("segformer")
    model_dir = root / "tiny-segformer"
    model = _tiny_segformer()
    model.save_pretrained(model_dir)
    SegformerImageProcessor(size=PROCESSOR_SIZE).save_pretrained(model_dir)
    output = root / "tiny.onnx"
    result = CliRunner().invoke(cli, ["models", "export-segmenter", "--model", str(model_dir), "-o", str(output)],
                                env={"CHATEDIT_DATA_DIR": str(root / "data")}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return model, model_dir, output, result.output


def test_the_command_reports_the_file_and_how_to_use_it(exported: tuple[object, Path, Path, str]) -> None:
    _, _, output, printed = exported
    assert output.is_file()
    assert f"Wrote {output}" in printed and "5 labels, input 96×64" in printed
    assert f"CHATEDIT_SEGMENTER={output.resolve()}" in printed


def test_onnx_logits_match_pytorch_at_any_batch_and_size(exported: tuple[object, Path, Path, str]) -> None:
    import onnxruntime as ort
    import torch

    model, _, output, _ = exported
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 64, 96), (2, 3, 96, 64), (3, 3, 48, 80), (1, 3, 50, 77)]:
        pixels = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            expected = model(pixel_values=torch.from_numpy(pixels)).logits.numpy()
        (got,) = session.run(None, {"pixel_values": pixels})
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= 1e-4


def test_metadata_round_trips(exported: tuple[object, Path, Path, str]) -> None:
    from core.segmentation.export import weights_sha256

    model, model_dir, output, _ = exported
    meta = read_metadata(output)
    assert meta.label_names == LABELS
    assert meta.model_id == f"tiny-segformer@{weights_sha256(model)[:12]}"
    assert meta.source == str(model_dir)
    assert meta.preprocessing == Preprocessing(do_resize=True, height=64, width=96, resample="bilinear",
                                               do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                                               image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))
    assert SegmenterMetadata.from_props(meta.to_props()) == meta

    import onnx

    proto = onnx.load(str(output))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "producer.note", "kept"
    changed = SegmenterMetadata(model_id="other@0123456789ab", source="x", label_names=("A", "B"),
                                preprocessing=Preprocessing(do_normalize=False))
    write_metadata(proto, changed)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["producer.note"] == "kept"
    assert SegmenterMetadata.from_props(props) == changed


def test_preprocessing_and_labels_match_the_transformers_pipeline(exported: tuple[object, Path, Path, str]) -> None:
    import torch
    from transformers import SegformerImageProcessor

    model, model_dir, output, _ = exported
    image = np.random.default_rng(2).integers(0, 256, (70, 130, 3), dtype=np.uint8)
    processor = SegformerImageProcessor.from_pretrained(model_dir)
    expected_pixels = processor(images=image, return_tensors="np")["pixel_values"]
    ours = preprocess(image, read_metadata(output).preprocessing)
    assert ours.dtype == np.float32 and np.array_equal(ours, expected_pixels)

    with torch.no_grad():
        logits = model(pixel_values=torch.from_numpy(ours)).logits
    expected = torch.nn.functional.interpolate(logits, size=image.shape[:2], mode="bilinear",
                                               align_corners=False).argmax(1)[0].numpy()
    result = load_segmenter(output).segment(image)
    assert result.label_map.shape == image.shape[:2]
    assert (result.label_map == expected).mean() >= 0.999


def test_a_missing_directory_and_a_wrong_file_name_are_one_sentence(tmp_path: Path) -> None:
    env = {"CHATEDIT_DATA_DIR": str(tmp_path / "data")}
    missing = CliRunner().invoke(cli, ["models", "export-segmenter", "--model", str(tmp_path / "nothing"),
                                       "-o", str(tmp_path / "x.onnx")], env=env)
    assert missing.exit_code == 1
    assert missing.output == f"Error: Cannot load the model '{tmp_path / 'nothing'}': there is no such directory.\n"
    wrong = CliRunner().invoke(cli, ["models", "export-segmenter", "--model", "x/y", "-o", str(tmp_path / "x.bin")],
                               env=env)
    assert wrong.exit_code == 2 and "must end in .onnx" in wrong.output


def test_an_unreachable_hub_is_said_in_one_sentence(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATEDIT_", "HF_"))}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), CHATEDIT_DATA_DIR=str(tmp_path / "d"))
    done = subprocess.run([sys.executable, "-m", "app.cli", "models", "export-segmenter", "--model",
                           "someone/some-segmenter", "-o", str(tmp_path / "x.onnx")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: Cannot load the model 'someone/some-segmenter': the Hugging Face Hub cannot be reached from here "
        "and the model is not in the local cache; download it where there is a network and pass its directory.")
    assert not (tmp_path / "x.onnx").exists()
