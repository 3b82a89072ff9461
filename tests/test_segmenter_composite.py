"""The embedded segmenter on real photos: MediaPipe's real weights, converted by our code, parts a person would name.

The models come out of the mediapipe wheel and the photos out of scikit-image's wheel and
Debian's opencv-doc (tests/real_assets.py, cached per machine); the segmenter is installed
once per session by the product's own install code into a temporary data dir. Positions are
what a person sees in the photos: the astronaut's face is around (225, 120) in her 512×512
portrait, her orange suit fills the lower half; in messi5.jpg (548×342) the player's head is
around (240, 110), his jersey around (240, 170), his red shorts around (270, 250).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from core.segmentation import InvalidSegmenter, load_segmenter, read_metadata
from core.segmentation.anchors import ssd_anchors
from core.segmentation.body_parts import LABELS
from core.segmentation.composite import MANIFEST, CompositeSegmenter, clear_loaded
from core.segmentation.crops import Roi
from core.segmentation.default_segmenter import (
    ConversionMismatch,
    check_conversion,
    default_segmenter_path,
    segmenter_in_use,
)
from core.segmentation.runtime import SegmentationResult
from core.settings import load_settings
from jobs.images import encode_png, store_upload
from jobs.segmentation import segment_image
from jobs.services import Services
from tests import real_assets

EXPECTED_LABELS = ("Background", "Hair", "Face", "Lips", "Eyes", "Eyebrows", "Neck", "Upper-clothes", "Left-arm",
                   "Right-arm", "Pants", "Left-leg", "Right-leg")


@pytest.fixture(scope="session")
def installed(default_segmenter: Path) -> Path:
    return default_segmenter


@pytest.fixture(scope="session")
def astronaut(installed: Path) -> SegmentationResult:
    return load_segmenter(installed).segment(real_assets.astronaut_rgb())


@pytest.fixture(scope="session")
def messi(installed: Path) -> SegmentationResult:
    return load_segmenter(installed).segment(real_assets.messi_rgb())


def _mask(result: SegmentationResult, name: str) -> np.ndarray:
    return result.label_map == result.label_names.index(name)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a mask's pixels, inclusive."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def _at(result: SegmentationResult, x: int, y: int) -> str:
    return result.label_names[int(result.label_map[y, x])]


def test_the_labels_are_fixed_and_background_comes_first(installed: Path) -> None:
    meta = read_metadata(installed)
    assert meta.label_names == LABELS == EXPECTED_LABELS
    assert meta.model_id.startswith("chatedit-parts@") and len(meta.model_id) == len("chatedit-parts@") + 12


def test_the_astronaut_portrait_is_parsed_into_the_parts_a_person_sees(astronaut: SegmentationResult) -> None:
    height, width = astronaut.label_map.shape
    assert (height, width) == (512, 512)
    corners = [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)]
    assert [_at(astronaut, x, y) for x, y in corners] == ["Background"] * 4
    assert {"Face", "Hair", "Lips", "Eyes", "Eyebrows", "Upper-clothes"} <= set(astronaut.present)
    face = _mask(astronaut, "Face")
    # The face: around her nose, and nowhere outside her head (no flag, wall or shuttle).
    assert _at(astronaut, 226, 122) == "Face"
    x0, y0, x1, y1 = _box(face)
    assert 165 <= x0 and x1 <= 290 and 55 <= y0 and y1 <= 195
    # Lips and eyes lie inside the face's box, the eyes above the lips.
    for part in ("Lips", "Eyes", "Eyebrows"):
        px0, py0, px1, py1 = _box(_mask(astronaut, part))
        assert x0 <= px0 and px1 <= x1 and y0 <= py0 and py1 <= y1, part
    assert _centroid(_mask(astronaut, "Eyes"))[1] < _centroid(_mask(astronaut, "Lips"))[1]
    # Her hair is above her face; the top of her head is hair.
    assert _centroid(_mask(astronaut, "Hair"))[1] < _centroid(face)[1]
    assert _at(astronaut, 226, 35) == "Hair"
    # The suit is clothes, below the face, and covers its centre.
    clothes = _mask(astronaut, "Upper-clothes")
    assert _centroid(clothes)[1] > y1
    assert _at(astronaut, 300, 420) == "Upper-clothes"
    assert astronaut.shares["Upper-clothes"] > 0.25
    # Parts whose points are out of the picture are absent, never guessed.
    assert not {"Pants", "Left-leg", "Right-leg"} & set(astronaut.present)


def test_the_footballer_is_parsed_head_to_feet(messi: SegmentationResult) -> None:
    assert messi.label_map.shape == (342, 548)
    assert {"Face", "Hair", "Upper-clothes", "Pants", "Left-leg", "Right-leg", "Left-arm",
            "Right-arm"} <= set(messi.present)
    face = _mask(messi, "Face")
    fx0, fy0, fx1, fy1 = _box(face)
    assert 215 <= fx0 and fx1 <= 270 and 85 <= fy0 and fy1 <= 145
    assert _at(messi, 240, 170) == "Upper-clothes"  # the jersey's chest
    assert _at(messi, 270, 250) == "Pants"  # his red shorts
    assert _centroid(_mask(messi, "Upper-clothes"))[1] > fy1
    # Legs are below the shorts; his left leg is the one stretched to the right of the photo.
    assert _centroid(_mask(messi, "Left-leg"))[0] > _centroid(_mask(messi, "Right-leg"))[0]
    assert _centroid(_mask(messi, "Left-arm"))[0] > _centroid(_mask(messi, "Right-arm"))[0]
    assert min(_centroid(_mask(messi, name))[1] for name in ("Left-leg", "Right-leg")) > \
        _centroid(_mask(messi, "Upper-clothes"))[1]
    # The ball and the crowd are not him.
    assert _at(messi, 362, 312) == "Background" and _at(messi, 30, 40) == "Background"


def test_only_the_largest_of_several_people_is_parsed_and_a_note_says_so(installed: Path) -> None:
    import cv2

    portrait = real_assets.astronaut_rgb()
    small = cv2.resize(portrait, (256, 256), interpolation=cv2.INTER_AREA)
    pair = np.full((512, 832, 3), 235, dtype=np.uint8)  # a gap of plain wall between the two
    pair[:, :512] = portrait
    pair[256:, 576:] = small
    result = load_segmenter(installed).segment(pair)
    assert any(note.startswith("2 people are in the photo") and "Background" in note for note in result.notes)
    assert _at(result, 226, 122) == "Face"
    assert (result.label_map[:, 576:] == 0).all()  # the small astronaut stays Background


def test_label_maps_are_cached_per_image_and_model(services: Services, installed: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = CompositeSegmenter.segment

    def counted(self: CompositeSegmenter, rgb: np.ndarray, **kwargs: object) -> SegmentationResult:
        calls.append(self.model_id)
        return real(self, rgb, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(CompositeSegmenter, "segment", counted)
    # Installed in the data dir, with no CHATEDIT_SEGMENTER: the default is the segmenter in use.
    target = default_segmenter_path(services.settings)
    assert segmenter_in_use(services.settings) is None
    shutil.copytree(installed, target)
    assert segmenter_in_use(services.settings) == target
    image_id = store_upload(services, encode_png(real_assets.astronaut_rgb())).id
    first = segment_image(services, image_id)
    second = segment_image(services, image_id)
    assert not first.cached and second.cached and second.segmentation_id == first.segmentation_id
    assert len(calls) == 1 and first.model_id == read_metadata(target).model_id
    assert np.array_equal(first.label_map, second.label_map) and "Face" in second.present


def test_install_default_writes_the_folder_once(tmp_path: Path, installed: Path) -> None:
    data_dir = tmp_path / "data"
    cache = data_dir / "models" / ".cache"
    cache.mkdir(parents=True)
    models = real_assets.mediapipe_models()
    os.symlink(models.licence.parent, cache / models.licence.parent.name)  # the wheel already fetched, no download
    env = {"CHATEDIT_DATA_DIR": str(data_dir), "CHATEDIT_SEGMENTER": ""}
    from app.cli import cli

    first = CliRunner().invoke(cli, ["models", "install-default"], env=env)
    assert first.exit_code == 0, first.output
    folder = data_dir / "models" / "chatedit-parts"
    assert "Converting pose_landmark_full" in first.output and str(folder.resolve()) in first.output
    assert "Labels: " + ", ".join(EXPECTED_LABELS) + "." in first.output
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["label_names"] == list(EXPECTED_LABELS)
    assert manifest["model_id"] == read_metadata(installed).model_id  # the same conversion gives the same id
    assert manifest["labels"]["Hair"]["approximate"] is True and manifest["labels"]["Face"]["approximate"] is False
    pose = manifest["models"]["pose_landmark_full"]
    assert pose["version"] == "0.10.21" and pose["member"].endswith("pose_landmark_full.tflite")
    assert pose["wheel"].startswith("mediapipe-0.10.21-") and len(pose["wheel_sha256"]) == 64
    assert "Apache License" in (folder / "LICENSE").read_text()
    written = (folder / MANIFEST).stat().st_mtime_ns
    second = CliRunner().invoke(cli, ["models", "install-default"], env=env)
    assert second.exit_code == 0 and "already installed" in second.output
    assert (folder / MANIFEST).stat().st_mtime_ns == written
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".chatedit-parts")]


def test_a_damaged_installation_is_a_sentence(tmp_path: Path, installed: Path) -> None:
    folder = tmp_path / "chatedit-parts"
    shutil.copytree(installed, folder)
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(InvalidSegmenter, match=r"cannot be used as a segmenter: its segmenter.json is not readable"):
        read_metadata(folder)
    manifest = json.loads((installed / MANIFEST).read_text())
    manifest["code_version"] = 0
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InvalidSegmenter, match="installed by another version of ChatEdit"):
        load_segmenter(folder)
    manifest["code_version"] = json.loads((installed / MANIFEST).read_text())["code_version"]
    manifest["model_id"] = "chatedit-parts@000000000000"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InvalidSegmenter, match="does not name its networks"):
        read_metadata(folder)
    manifest["model_id"] = read_metadata(installed).model_id
    (folder / MANIFEST).write_text(json.dumps(manifest))
    (folder / "face_landmark.onnx").write_bytes(b"not a model")
    clear_loaded()
    with pytest.raises(InvalidSegmenter, match="face_landmark.onnx does not match the sha256"):
        load_segmenter(folder)
    (folder / MANIFEST).unlink()
    with pytest.raises(InvalidSegmenter, match="it is a folder without segmenter.json"):
        read_metadata(folder)


def test_a_conversion_that_disagrees_with_the_original_is_refused(installed: Path) -> None:
    models = real_assets.mediapipe_models()
    tflite = models.path("face_landmark").read_bytes()
    good = (installed / "face_landmark.onnx").read_bytes()
    assert check_conversion("face_landmark", tflite, good) < 1e-4
    model = onnx.load_from_string(good)
    first_conv = next(node for node in model.graph.node if node.op_type == "Conv")
    weights = next(init for init in model.graph.initializer if init.name == first_conv.input[1])
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * np.float32(1.01), weights.name))
    with pytest.raises(ConversionMismatch, match="The converted face_landmark differs from the original TFLite model"):
        check_conversion("face_landmark", tflite, model.SerializeToString())


def test_serve_installs_the_default_only_when_asked_and_says_so_without_a_registry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli_segmentation import install_default_if_missing

    monkeypatch.delenv("CHATEDIT_SEGMENTER", raising=False)
    settings = load_settings(data_dir=tmp_path / "data", auto_install_segmenter=False)
    install_default_if_missing(settings)  # the test settings turn auto-install off
    assert not default_segmenter_path(settings).exists() and capsys.readouterr().out == ""
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens on the discard port
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    install_default_if_missing(settings.model_copy(update={"auto_install_segmenter": True}))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("Installing the default segmenter")
    assert len(lines) == 2 and lines[1].startswith("The default segmenter was not installed")
    assert "Python package index" in lines[1] and "Traceback" not in lines[1]
    assert segmenter_in_use(settings) is None


def test_anchors_follow_the_short_range_detector_layout() -> None:
    anchors = ssd_anchors()
    assert anchors.shape == (896, 2)
    assert np.allclose(anchors[:2], [[0.5 / 16, 0.5 / 16]] * 2)  # stride 8: 16×16 cells, 2 anchors each
    assert np.allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)  # strides 16 ×3: 8×8 cells, 6 anchors each


def test_a_rotated_crop_maps_its_points_back() -> None:
    roi = Roi(cx=100.0, cy=60.0, width=80.0, height=80.0, angle=0.4)
    points = np.array([[0.0, 0.0], [192.0, 0.0], [96.0, 96.0], [10.0, 150.0]])
    matrix = roi.to_crop(192)
    back = roi.from_crop(points, 192)
    again = back @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(again, points)
    assert np.allclose(back[2], [100.0, 60.0])


def test_the_status_page_names_the_installed_default(tmp_path: Path, installed: Path) -> None:
    from app.ui.status import segmenter_row

    settings = load_settings(data_dir=tmp_path / "data", segmenter=None)
    assert segmenter_row(settings)["backend"] == "none"
    shutil.copytree(installed, default_segmenter_path(settings))
    row = segmenter_row(settings)
    assert row["usable"] == "yes" and read_metadata(installed).model_id in row["note"]


def test_a_photo_without_a_person_is_all_background_and_says_so(installed: Path) -> None:
    wall = np.full((120, 200, 3), 180, dtype=np.uint8)
    result = load_segmenter(installed).segment(wall)
    assert result.present == ("Background",) and not result.label_map.any()
    assert result.notes == ("No person was found.",)
