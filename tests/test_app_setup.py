"""The app's process stays light, `chatedit serve` starts it, and the per-person settings and gallery queries hold."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from app.cli import _streamlit_command
from app.ui.samples import SAMPLES, sample_png
from core.settings import load_settings
from db.types import utcnow
from jobs.edits import EditRequest, submit_edit
from jobs.gallery import list_histories, set_base_step, set_last_job, tree_order
from jobs.histories import record_step, start_history
from jobs.images import store_upload
from jobs.services import Services
from jobs.user_settings import InvalidPreferences, edit_params, validate_preferences

ROOT = Path(__file__).parents[1]
HEAVY = ("torch", "diffusers", "transformers", "onnxruntime", "peft", "accelerate")


def test_the_app_and_every_page_load_no_heavy_library(tmp_path: Path) -> None:
    from tests.test_segmentation_support import build_colour_segmenter

    segmenter = build_colour_segmenter(tmp_path / "colours.onnx")  # the editor reads its metadata, never runs it
    code = ("import sys; from streamlit.testing.v1 import AppTest\n"
            "import app.ui.editor, app.ui.gallery, app.ui.settings, app.ui.status, app.ui.manual, app.ui.selection\n"
            "for page in ('editor', 'gallery', 'settings', 'status', 'manual'):\n"
            "    at = AppTest.from_file('app/streamlit_app.py', default_timeout=60).run()\n"
            "    at.switch_page(f'views/{page}.py').run()\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=240,
                         env={"PATH": "/usr/bin:/bin", "CHATEDIT_DATA_DIR": str(tmp_path),
                              "CHATEDIT_SEGMENTER": str(segmenter)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_serve_runs_streamlit_headless_without_usage_stats_and_with_the_upload_cap() -> None:
    command = _streamlit_command("0.0.0.0", 8600, load_settings(max_upload_bytes=3 * 2**20 + 1))
    assert command[1:4] == ["-m", "streamlit", "run"] and Path(command[4]) == ROOT / "app" / "streamlit_app.py"
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.port"] == "8600" and options["--server.address"] == "0.0.0.0"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    assert options["--server.maxUploadSize"] == "4"


def test_preferences_are_checked_one_sentence_per_problem() -> None:
    assert validate_preferences({"strength": 0.4, "steps": 20.0, "seed": -1, "controlnet": False,
                                 "scheduler": "Euler a", "planner": "rules", "cfg_scale": None}) == {
        "strength": 0.4, "steps": 20, "seed": -1, "controlnet": False, "scheduler": "Euler a", "planner": "rules"}
    with pytest.raises(InvalidPreferences) as err:
        validate_preferences({"strength": 2, "steps": 2.5, "scheduler": "fast", "colour": 1, "controlnet": "yes"})
    message = str(err.value)
    for part in ("Strength must be between 0 and 1, not 2", "Steps must be a whole number", "Scheduler is one of",
                 "no setting called 'colour'", "ControlNet (keep outlines) is on or off"):
        assert part in message
    assert edit_params({"planner": "rules", "steps": 20}) == {"steps": 20}


def test_sample_images_are_distinct_clean_uploads(services: Services) -> None:
    stored = [store_upload(services, sample_png(name)) for name in SAMPLES]
    assert len({s.sha256 for s in stored}) == len(SAMPLES)
    with pytest.raises(KeyError, match="the samples are"):
        sample_png("nope")


def test_gallery_lists_histories_with_counts_and_filters(services: Services) -> None:
    first = store_upload(services, sample_png("Portrait"))
    second = store_upload(services, sample_png("Still life"))
    a = start_history(services, first.id, title="a")
    b = start_history(services, second.id, title="b")
    child = record_step(services, history_id=a.history_id, parent_id=a.root_step_id, image_id=second.id,
                        commands=[{"command": "adjust", "paras": ["brightness", 0.3, []]}], params={}, job_id=None)
    set_base_step(services, a.history_id, child)
    job = submit_edit(services, EditRequest(image_id=second.id, commands=[{"command": "change",
                                                                           "paras": [["Selection"], "x"]}]))
    set_last_job(services, b.history_id, job)
    cards = {c.title: c for c in list_histories(services)}
    assert cards["a"].step_count == 2 and cards["a"].latest_image_id == second.id and cards["a"].base_step_id == child
    assert cards["b"].last_status == "queued" and cards["a"].last_status is None
    assert list_histories(services, since=utcnow() + timedelta(hours=1)) == []
    assert [c.title for c in list_histories(services, owner_id=1, until=utcnow() + timedelta(hours=1))] == ["b", "a"]
    assert list_histories(services, failures_only=True) == []
    assert tree_order({1: None, 2: 1, 3: 1, 4: 2}) == [1, 2, 4, 3]
