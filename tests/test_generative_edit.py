"""Generative commands through the real `edit` worker handler, on tiny random-weight pipelines loaded from disk."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from core.generative.compositing import feathered_alpha
from core.masks import mask_to_png
from core.recipes import read_recipe
from core.settings import Settings
from db.migrate import upgrade
from jobs.edits import EditRequest, submit_edit
from jobs.handlers.generate import submit_generate
from jobs.histories import history_steps, start_history
from jobs.images import image_rgb, store_array
from jobs.queue import JobStatus
from jobs.services import Services
from tests.conftest import running_worker
from tests.diffusion_support import (
    FAST,
    TinyModels,
    generative_settings,
    photo,
)


@pytest.fixture
def settings(tmp_path: Path, tiny_models: TinyModels) -> Settings:
    return generative_settings(tmp_path, tiny_models)


def _run(services: Services, request: EditRequest):
    job_id = submit_edit(services, request)
    assert services.queue.get(job_id).lane == "gpu"
    with running_worker(services, lanes=["interactive", "gpu"]):
        return services.queue.wait(job_id, timeout_s=120)


def _selection(services: Services, shape: tuple[int, int], box: tuple[slice, slice]) -> tuple[str, np.ndarray]:
    mask = np.zeros(shape, dtype=bool)
    mask[box] = True
    return services.blobs.put(mask_to_png(mask)), mask


def test_change_inpaints_with_controlnet_and_keeps_everything_outside_the_mask(services: Services,
                                                                                tiny_models: TinyModels) -> None:
    base = photo()
    stored = store_array(services, base)
    history = start_history(services, stored.id)
    key, mask = _selection(services, base.shape[:2], (slice(8, 40), slice(16, 56)))
    job = _run(services, EditRequest(
        image_id=stored.id, history_id=history.history_id, parent_step_id=history.root_step_id, selection_key=key,
        commands=[{"command": "change", "paras": [["Selection"], "a blue shirt"]}], user_settings={**FAST, "seed": -1},
    ))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    edited = image_rgb(services, job.result["image_id"])
    outside = feathered_alpha(mask, 4) == 0
    assert np.array_equal(edited[outside], base[outside])
    assert not np.array_equal(edited[mask], base[mask])

    recipe = read_recipe(services.blobs.get({o.name: o for o in services.queue.outputs(job.id)}["image"].blob_key))
    run = recipe["generation"][0]
    assert recipe["backend"] == "diffusers" and run["command"] == "change"
    assert run["model"] == str(tiny_models.inpaint) and run["controlnet"] == str(tiny_models.controlnet)
    assert run["scheduler"] == "DPM++ 2M" and run["steps"] == 2 and run["steps_run"] >= 1
    assert isinstance(run["seed"], int) and recipe["seed"] == run["seed"]  # -1 became a recorded seed
    assert recipe["params"][0]["controlnet_low_threshold"] == 100  # from the inpaint template
    assert job.progress == 1.0
    steps = history_steps(services, history.history_id)
    assert steps[-1].params["generation"][0]["seed"] == run["seed"]


def test_the_same_seed_gives_the_same_image(services: Services) -> None:
    stored = store_array(services, photo())
    key, _ = _selection(services, (48, 64), (slice(8, 40), slice(16, 56)))
    request = EditRequest(image_id=stored.id, selection_key=key, user_settings={**FAST, "seed": 1234},
                          commands=[{"command": "change", "paras": [["Selection"], "red"]}])
    first, second = _run(services, request), _run(services, request)
    assert first.status is second.status is JobStatus.SUCCEEDED, (first.error_message, second.error_message)
    assert np.array_equal(image_rgb(services, first.result["image_id"]), image_rgb(services, second.result["image_id"]))


def test_remove_uses_the_inpainting_model_on_a_small_region(services: Services) -> None:
    base = photo()
    stored = store_array(services, base)
    key, mask = _selection(services, base.shape[:2], (slice(20, 28), slice(28, 36)))
    job = _run(services, EditRequest(image_id=stored.id, selection_key=key, user_settings=FAST,
                                     commands=[{"command": "remove", "paras": [["Selection"]]}]))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    assert job.result["generation"][0]["controlnet"] is None  # outlines of what is removed are not kept
    assert any("full resolution" in n for n in job.result["notes"])
    edited = image_rgb(services, job.result["image_id"])
    outside = feathered_alpha(mask, 4) == 0
    assert np.array_equal(edited[outside], base[outside])


def test_instruct_runs_instructpix2pix_with_both_guidances(services: Services, tiny_models: TinyModels) -> None:
    base = photo()
    stored = store_array(services, base)
    job = _run(services, EditRequest(image_id=stored.id, user_settings={**FAST, "image_guidance": 1.2},
                                     commands=[{"command": "instruct", "paras": ["make it snow"]}]))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    run = job.result["generation"][0]
    assert run["task"] == "instruct" and run["model"] == str(tiny_models.ip2p) and run["steps_run"] == 2
    edited = image_rgb(services, job.result["image_id"])
    assert edited.shape == base.shape and not np.array_equal(edited, base)


def test_style_runs_img2img_with_controlnet_on_the_whole_image(services: Services, tiny_models: TinyModels) -> None:
    stored = store_array(services, photo())
    job = _run(services, EditRequest(image_id=stored.id, user_settings=FAST,
                                     commands=[{"command": "style", "paras": ["oil painting"]}]))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    run = job.result["generation"][0]
    assert run["task"] == "img2img" and run["model"] == str(tiny_models.base)
    assert run["controlnet"] == str(tiny_models.controlnet)


def test_generate_starts_a_history_from_a_prompt(services: Services) -> None:
    job_id = submit_generate(services, "a lighthouse at dusk", user_settings={**FAST, "width": 64, "height": 48})
    with running_worker(services, lanes=["gpu"]):
        job = services.queue.wait(job_id, timeout_s=120)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    assert image_rgb(services, job.result["image_id"]).shape == (48, 64, 3)
    steps = history_steps(services, job.result["history_id"])
    assert [s.image_id for s in steps] == [job.result["image_id"]]
    assert job.result["generation"][0]["task"] == "txt2img"


def test_a_missing_model_folder_fails_with_a_sentence(tmp_path: Path, tiny_models: TinyModels) -> None:
    settings = generative_settings(tmp_path, tiny_models, inpaint_model=str(tmp_path / "nowhere"))
    svc = Services.from_settings(settings)
    upgrade(svc.database)
    try:
        stored = store_array(svc, photo())
        key, _ = _selection(svc, (48, 64), (slice(8, 40), slice(16, 56)))
        job = _run(svc, EditRequest(image_id=stored.id, selection_key=key, user_settings=FAST,
                                    commands=[{"command": "change", "paras": [["Selection"], "red"]}]))
    finally:
        svc.close()
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert "CHATEDIT_INPAINT_MODEL" in job.error_message and "could not be loaded" in job.error_message


def test_cancel_stops_a_running_diffusion_job(services: Services) -> None:
    stored = store_array(services, photo())
    job_id = submit_edit(services, EditRequest(image_id=stored.id, user_settings={**FAST, "steps": 150},
                                               commands=[{"command": "instruct", "paras": ["make it snow"]}]))
    with running_worker(services, lanes=["gpu"]):
        deadline = time.monotonic() + 60
        while services.queue.get(job_id).progress <= 0.1 and time.monotonic() < deadline:
            time.sleep(0.02)
        services.queue.cancel(job_id)
        cancelled = time.monotonic()
        job = services.queue.wait(job_id, timeout_s=60)
    assert job.status is JobStatus.CANCELLED
    assert time.monotonic() - cancelled < 5
    assert job.progress < 0.9 and "image" not in {o.name for o in services.queue.outputs(job_id)}  # previews only
