"""Uploads the app refuses say why in a sentence and store nothing; the Status page's segmenter row."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ui.editor import start_from_upload
from app.ui.samples import sample_png
from app.ui.status import segmenter_row
from core.settings import Settings, load_settings
from jobs.gallery import list_histories
from jobs.histories import history_steps
from jobs.services import Services
from tests.app_support import open_app
from tests.test_segmentation_support import LABELS, build_colour_segmenter


def test_a_refused_upload_is_a_sentence_and_stores_nothing(settings: Settings) -> None:
    small = Services.from_settings(settings.model_copy(update={"max_upload_bytes": 4096}))
    try:
        from db.migrate import upgrade

        upgrade(small.database)
        too_big = start_from_upload(small, sample_png("Portrait"), "portrait")
        assert isinstance(too_big, str) and "over the 4 KB limit" in too_big and "Nothing was stored" in too_big
        not_an_image = start_from_upload(small, b"%PDF-1.7 not a photo", "report")
        assert isinstance(not_an_image, str) and not_an_image.startswith("This file is a PDF document, which is not accepted")
        assert list_histories(small) == []
    finally:
        small.close()


def test_an_accepted_upload_starts_a_history_named_after_the_file(services: Services) -> None:
    started = start_from_upload(services, sample_png("Still life"), "  fruit bowl ")
    assert isinstance(started, int)
    (card,) = list_histories(services)
    assert card.id == started and card.title == "fruit bowl" and len(history_steps(services, started)) == 1


def test_status_segmenter_row_says_configured_missing_or_which_model(tmp_path: Path) -> None:
    assert segmenter_row(load_settings())["usable"] == "—"
    missing = segmenter_row(load_settings(segmenter=tmp_path / "gone.onnx"))
    assert missing["usable"] == "no" and "does not exist" in missing["note"]
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    assert segmenter_row(load_settings(segmenter=tmp_path / "junk.onnx"))["usable"] == "no"
    model = build_colour_segmenter(tmp_path / "colours.onnx", model_id="colours@abcdef012345")
    row = segmenter_row(load_settings(segmenter=model))
    assert row["usable"] == "yes" and f"colours@abcdef012345 ({len(LABELS)} labels)" in row["note"]


def test_status_page_shows_the_segmenter_and_planner_rows(settings: Settings, services: Services, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATEDIT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CHATEDIT_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("CHATEDIT_SEGMENTER", str(build_colour_segmenter(tmp_path / "colours.onnx")))
    at = open_app("status")
    backends = at.table[-1].value
    segmenter = backends[backends["part"] == "segmenter"].iloc[0]
    assert segmenter["usable"] == "yes" and "colours@000000000001" in segmenter["note"]
    planners = backends[backends["part"] == "planner"]
    assert list(planners["usable"]) == ["yes", "no", "no"]
    assert "CHATEDIT_OPENAI_MODEL" in planners.iloc[1]["note"]
