"""The editor with a segmenter: a `segment` job with progress, label chips, the overlay, planning on the real labels,
a click that selects a whole part and brush strokes that fill the parts they touch (hand-built ONNX segmenter)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.ui import segments
from app.ui import selection as sel
from app.ui.editor import planning_labels
from core.rules import load_rules
from core.settings import Settings
from jobs.histories import start_history
from jobs.images import encode_png, store_upload
from jobs.segmentation import segment_image
from jobs.services import Services
from tests.app_support import open_app
from tests.conftest import running_worker
from tests.test_segmentation_support import (
    ID,
    LABELS,
    build_colour_segmenter,
    paint,
    person_labels,
)


@pytest.fixture
def segmenter(tmp_path: Path) -> Path:
    return build_colour_segmenter(tmp_path / "colours.onnx")


@pytest.fixture
def seg_env(settings: Settings, services: Services, segmenter: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Services, Services]]:
    """The app's environment names the segmenter; yields (the test's services, a worker's services that have it)."""
    monkeypatch.setenv("CHATEDIT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CHATEDIT_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("CHATEDIT_SEGMENTER", str(segmenter))
    worker_services = Services.from_settings(settings.model_copy(update={"segmenter": segmenter}))
    yield services, worker_services
    worker_services.close()


def _person_history(services: Services) -> tuple[int, int, np.ndarray]:
    truth = person_labels()
    stored = store_upload(services, encode_png(paint(truth)))
    return start_history(services, stored.id, title="Person").history_id, stored.id, truth


def _segmented(at: AppTest, services: Services, worker_services: Services) -> None:
    (job,) = services.queue.list(kind="segment")
    with running_worker(worker_services, lanes=["interactive"]):
        assert services.queue.wait(job.id, timeout_s=60).status.value == "succeeded"
    at.run()
    assert not at.exception, at.exception


def test_upload_segments_as_a_job_then_chips_overlay_and_planning_use_the_real_labels(
        seg_env: tuple[Services, Services]) -> None:
    services, worker_services = seg_env
    history_id, image_id, _ = _person_history(services)
    at = open_app(history=str(history_id))
    (job,) = services.queue.list(kind="segment")
    assert job.payload == {"image_id": image_id} and job.lane == "interactive"
    progress = at.get("progress")[0].proto.text
    assert progress.startswith("Finding the parts of this image is queued, but no worker serving the 'interactive'")
    assert not any("No segmenter is configured" in i.value for i in at.info)

    _segmented(at, services, worker_services)
    chips = next(m.value for m in at.markdown if m.value.startswith("**Parts found:**"))
    for name in ("Background", "Hair", "Face", "Upper-clothes", "Dress", "Left-arm", "Right-arm"):
        assert f":gray-badge[{name} ·" in chips
    assert "Pants" not in chips and "Bag" not in chips  # absent, and a one-pixel speck
    assert not at.get("progress")

    at.toggle(key=segments.SHOW_OVERLAY).set_value(True).run()
    assert not at.exception, at.exception
    assert any(i.proto.imgs[0].caption == "Each part tinted in its own colour" for i in at.get("image"))

    at.chat_input(key="chat_prompt").set_value("make the pants red").run()  # this person wears a dress
    assert "This image has no Pants" in at.chat_message[-1].markdown[0].value
    at.chat_input(key="chat_prompt").set_value("make the hair blue").run()
    picks = [c for c in at.checkbox if c.key.startswith("pick_")]
    assert [c.label for c in picks if not c.disabled] == ["**Recolor the Hair to blue**"]

    again = open_app(history=str(history_id))  # a new session finds the cached label map at once: no second job
    assert len(services.queue.list(kind="segment")) == 1
    assert any(m.value.startswith("**Parts found:**") for m in again.markdown)


def test_a_click_selects_the_whole_part_and_strokes_fill_the_parts_they_touch(
        seg_env: tuple[Services, Services]) -> None:
    services, worker_services = seg_env
    history_id, _, truth = _person_history(services)
    at = open_app(history=str(history_id))
    _segmented(at, services, worker_services)

    at.radio(key="mask_tool").set_value("Click to select").run()
    assert at.radio(key="click_method").value == "Whole part"
    at.session_state[sel.CLICK] = (64, 32)  # the face
    at.run()
    assert np.array_equal(at.session_state[sel.SELECTION], truth == ID["Face"])

    at.chat_input(key="chat_prompt").set_value("make the selection red").run()
    picks = [c for c in at.checkbox if c.key.startswith("pick_")]
    assert [c.label for c in picks] == ["**Recolor the selection to red**"] and picks[0].value

    at.button(key="clear_selection").click().run()
    at.radio(key="mask_tool").set_value("Brush").run()
    assert at.checkbox(key="brush_fill_parts").value
    strokes = np.zeros((*truth.shape, 4), np.uint8)
    strokes[55:70, 50:62, 3] = 255  # 180 pixels inside the shirt
    at.session_state[sel.STROKES] = strokes
    at.button(key="apply_strokes").click().run()
    assert np.array_equal(at.session_state[sel.SELECTION], truth == ID["Upper-clothes"])

    at.button(key="clear_selection").click().run()
    at.checkbox(key="brush_fill_parts").uncheck().run()
    at.session_state[sel.STROKES] = strokes
    at.button(key="apply_strokes").click().run()
    assert at.session_state[sel.SELECTION].sum() == 180


def test_a_missing_segmenter_file_is_a_sentence_and_the_tools_still_work(
        settings: Settings, services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATEDIT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CHATEDIT_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("CHATEDIT_SEGMENTER", str(tmp_path / "nowhere.onnx"))
    history_id, _, _ = _person_history(services)
    at = open_app(history=str(history_id))
    assert any(e.value.startswith("The segmenter cannot be used:") and "Selection" in e.value for e in at.error)
    assert services.queue.list(kind="segment") == []
    at.chat_input(key="chat_prompt").set_value("make it brighter").run()
    assert [c.label for c in at.checkbox if c.key.startswith("pick_")] == [
        "**Brighten the whole image (+0.3)**"]


def test_a_failed_segment_job_says_why_and_can_be_tried_again(seg_env: tuple[Services, Services],
                                                             settings: Settings, tmp_path: Path) -> None:
    services, _ = seg_env
    history_id, image_id, _ = _person_history(services)
    at = open_app(history=str(history_id))
    broken = Services.from_settings(settings.model_copy(update={"segmenter": tmp_path / "gone.onnx"}))
    try:
        with running_worker(broken, lanes=["interactive"]):
            (job,) = services.queue.list(kind="segment")
            assert services.queue.wait(job.id, timeout_s=60).status.value == "failed"
    finally:
        broken.close()
    at.run()
    assert any(e.value.startswith("Finding the parts failed:") for e in at.error)
    at.button(key=f"segment_retry_{image_id}").click().run()
    assert len(services.queue.list(kind="segment")) == 2


def test_overlay_colours_each_part_and_planning_labels(services: Services, segmenter: Path) -> None:
    truth = person_labels()
    rgb = paint(truth)
    record = segment_image(services, store_upload(services, encode_png(rgb)).id, segmenter)
    shown = segments.parts_overlay(rgb, record)
    assert np.array_equal(shown[truth == ID["Background"]], rgb[truth == ID["Background"]])
    assert truth[10, 64] == ID["Hair"] and truth[32, 64] == ID["Face"]
    hair, face = shown[10, 64], shown[32, 64]
    assert not np.array_equal(hair, rgb[10, 64]) and not np.array_equal(face, rgb[32, 64])
    assert segments.colour_of(record, "Hair") != segments.colour_of(record, "Face")
    assert segments.label_map_for(record, (64, 64)).shape == (64, 64)

    rules = load_rules()
    found = segments.PartsState(configured=True, record=record)
    assert planning_labels(rules, found, True) == [*record.present, "Selection"]
    assert planning_labels(rules, segments.PartsState(configured=True, job_id=1), False) == list(rules.default_labels)
    assert planning_labels(rules, segments.PartsState(configured=True, problem="x"), True) == ["Selection"]
    assert planning_labels(rules, segments.PartsState(configured=False), False) == []
    assert set(record.present) <= set(LABELS)
