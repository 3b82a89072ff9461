"""The editor's generative entries: Start from a prompt (a `generate` job) and Swap face (a `swap_face` job).

Their models are not in tests: the pages' "not configured" sentences, the payloads they
queue, a real worker's failure sentence, and a finished job's outcome on the page (the test
finishes the job through the queue, as a worker does) are what is checked here.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from app.ui.editor import (
    UPLOAD_TYPES,
    face_swap_problem,
    start_face_swap,
    start_from_upload,
)
from app.ui.samples import sample_png
from core.settings import Settings
from jobs.gallery import last_job_id
from jobs.histories import get_step, history_steps, record_step, start_history
from jobs.images import store_upload
from jobs.queue import JobStatus
from jobs.services import Services
from jobs.user_settings import save_preferences
from tests.app_support import open_app
from tests.conftest import running_worker, services_with


def _history(services: Services) -> int:
    return start_history(services, store_upload(services, sample_png("Portrait")).id, title="Portrait").history_id


def _finish(services: Services, job_id: int, result: dict) -> None:
    """Claim the job and complete it with ``result``, as a worker does."""
    claimed = services.queue.claim("test-worker", ["gpu"], lease_s=30)
    assert claimed is not None and claimed.id == job_id
    assert services.queue.complete(job_id, "test-worker", result)


def test_without_models_each_entry_says_which_setting_or_files_enable_it(app_env: Services) -> None:
    at = open_app(history=str(_history(app_env)))
    assert any("Set CHATEDIT_BASE_MODEL to a Stable Diffusion model" in c.value for c in at.sidebar.caption)
    assert not any(b.label == "Generate" for b in at.button)
    info = " ".join(i.value for i in at.info)
    for part in ("CHATEDIT_FACE_ANALYSIS_DIR", "det_10g.onnx", "w600k_r50.onnx", "CHATEDIT_FACE_SWAP_MODEL",
                 "inswapper_128.onnx"):
        assert part in info
    assert not any(b.key == "swap_face_run" for b in at.button)


def test_start_from_a_prompt_queues_a_generate_job_shows_progress_and_opens_its_history(
        app_env: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    services = app_env
    monkeypatch.setenv("CHATEDIT_BASE_MODEL", str(tmp_path / "sd-model"))
    save_preferences(services, {"steps": 12, "seed": 7, "planner": "rules"})
    at = open_app()
    at.text_area(key="generate_prompt").set_value("   ")
    at.sidebar.button[-1].click().run()  # the form's Generate
    assert "The prompt must be non-empty text" in at.sidebar.error[0].value
    assert services.queue.list(kind="generate") == []

    at.text_area(key="generate_prompt").set_value("a lighthouse at dusk")
    at.sidebar.button[-1].click().run()
    assert not at.exception, at.exception
    (job,) = services.queue.list(kind="generate")
    assert job.lane == "gpu" and job.payload["prompt"] == "a lighthouse at dusk"
    assert job.payload["user_settings"] == {"steps": 12, "seed": 7}  # the person's parameters, not the planner
    assert "Generating is queued, but no worker serving the 'gpu' lane" in at.get("progress")[0].proto.text

    # The worker's answer: the generated image is the root of a new history.
    made = start_history(services, store_upload(services, sample_png("Sunset landscape")).id,
                         title="a lighthouse at dusk")
    _finish(services, job.id, {"history_id": made.history_id, "image_id": made.root_step_id})
    at.run()
    assert not at.exception, at.exception
    assert at.query_params["history"] == str(made.history_id)
    assert at.title[0].value == "a lighthouse at dusk"


def test_a_generate_job_that_fails_says_why_in_the_sidebar(
        app_env: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    services = app_env
    empty = tmp_path / "not-a-pipeline"
    empty.mkdir()
    monkeypatch.setenv("CHATEDIT_BASE_MODEL", str(empty))
    at = open_app()
    at.text_area(key="generate_prompt").set_value("a red bicycle")
    at.sidebar.button[-1].click().run()
    (job,) = services.queue.list(kind="generate")
    with services_with(settings, base_model=str(empty)) as worker_services, \
            running_worker(worker_services, lanes=["gpu"]):
        assert services.queue.wait(job.id, timeout_s=120).status is JobStatus.FAILED
    at.run()
    assert not at.exception, at.exception
    error = at.sidebar.error[0].value
    assert error.startswith("Generating failed: ") and "model_index.json" in error and "Traceback" not in error
    assert at.text_area(key="generate_prompt").value == "a red bicycle"  # nothing lost: ask again after fixing it


def test_swap_face_queues_its_job_on_the_base_and_the_result_lands_like_an_edit(
        app_env: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    services = app_env
    analysis = tmp_path / "buffalo_l"
    analysis.mkdir()
    swapper = tmp_path / "inswapper_128.onnx"
    swapper.write_bytes(b"")
    monkeypatch.setenv("CHATEDIT_FACE_ANALYSIS_DIR", str(analysis))
    monkeypatch.setenv("CHATEDIT_FACE_SWAP_MODEL", str(swapper))
    history_id = _history(services)
    at = open_app(history=str(history_id))
    assert any(b.key == "swap_face_run" and b.disabled for b in at.button)  # no face photo yet
    assert not any("CHATEDIT_FACE_SWAP_MODEL" in i.value for i in at.info)

    base_id = history_steps(services, history_id)[0].id
    base = get_step(services, base_id)
    refused = start_face_swap(services, history_id, base, b"not a photo")
    assert isinstance(refused, str) and refused.endswith("Nothing was queued.")
    assert services.queue.list(kind="swap_face") == []

    job_id = start_face_swap(services, history_id, base, sample_png("Portrait"))
    assert isinstance(job_id, int) and last_job_id(services, history_id) == job_id
    job = services.queue.get(job_id)
    assert job.lane == "gpu" and job.payload["target_image_id"] == base.image_id
    assert job.payload["history_id"] == history_id and job.payload["parent_step_id"] == base_id
    at = open_app(history=str(history_id))  # the page watches the history's newest job, as after a reload
    assert "Face swap is queued, but no worker serving the 'gpu' lane" in at.get("progress")[0].proto.text

    # The worker's answer, as jobs/handlers/swap_face.py records it: a step without commands.
    swapped = store_upload(services, sample_png("Still life"))
    step_id = record_step(services, history_id=history_id, parent_id=base_id, image_id=swapped.id, commands=[],
                          params={"backend": "onnxruntime", "generation": [{"command": "swap_face"}]}, job_id=job_id)
    _finish(services, job_id, {"image_id": swapped.id, "step_id": step_id})
    at.run()
    assert not at.exception, at.exception
    assert any(c.value == "Ran: face swap" for c in at.caption)
    at.button(key="set_base").click().run()
    assert at.success[0].value == f"Step {step_id} is the new base."


def test_the_uploaders_take_bmp_and_tiff(services: Services) -> None:
    assert {"bmp", "tif", "tiff"} <= set(UPLOAD_TYPES)
    for fmt in ("BMP", "TIFF"):
        data = io.BytesIO()
        Image.new("RGB", (40, 30), (200, 40, 40)).save(data, format=fmt)
        started = start_from_upload(services, data.getvalue(), f"red {fmt}")
        assert isinstance(started, int), started


def test_face_swap_problem_is_none_once_both_are_set(settings: Settings, tmp_path: Path) -> None:
    configured = Services.from_settings(settings.model_copy(update={
        "face_analysis_dir": tmp_path, "face_swap_model": tmp_path / "inswapper_128.onnx"}))
    try:
        assert face_swap_problem(configured) is None
    finally:
        configured.close()
