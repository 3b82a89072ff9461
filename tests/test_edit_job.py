"""The `edit` job on a real worker and database: commands in, an edited PNG with its recipe and a history step out."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from core.masks import mask_to_png
from core.recipes import read_recipe
from jobs.edits import EditRequest, InvalidEdit, submit_edit
from jobs.histories import history_steps, start_history
from jobs.images import image_rgb, store_array
from jobs.queue import JobStatus
from jobs.services import Services
from tests.conftest import running_worker


def _photo(height: int = 96, width: int = 128) -> np.ndarray:
    rng = np.random.default_rng(7)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = (70, 110, 150)
    image[20:70, 40:90] = (190, 60, 50)
    return np.clip(image.astype(int) + rng.integers(-12, 12, image.shape), 0, 255).astype(np.uint8)


def _lightness(pixels: np.ndarray) -> float:
    return float(cv2.cvtColor(pixels.reshape(1, -1, 3), cv2.COLOR_RGB2LAB)[..., 0].mean())


def _run(services: Services, request: EditRequest):
    job_id = submit_edit(services, request)
    with running_worker(services, lanes=["interactive", "gpu"]):
        job = services.queue.wait(job_id, timeout_s=60)
    return job


def _output_png(services: Services, job_id: int) -> bytes:
    outputs = {o.name: o for o in services.queue.outputs(job_id)}
    return services.blobs.get(outputs["image"].blob_key)


def test_brighter_whole_image_with_recipe_and_step(services: Services) -> None:
    base = _photo()
    stored = store_array(services, base)
    history = start_history(services, stored.id, title="test")
    job = _run(services, EditRequest(
        image_id=stored.id, history_id=history.history_id, parent_step_id=history.root_step_id,
        commands=[{"command": "adjust", "paras": ["brightness", 0.3, []]}],
    ))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    result = job.result
    edited = image_rgb(services, result["image_id"])
    assert _lightness(edited) > _lightness(base) + 3

    png = _output_png(services, job.id)
    recipe = read_recipe(png)
    assert recipe["commands"] == [{"command": "adjust", "paras": ["brightness", 0.3, []]}]
    assert recipe["backend"] == "classical" and recipe["job_id"] == job.id
    assert recipe["source_sha256"] == stored.sha256
    assert set(recipe["timings"]) >= {"load_s", "mask_s", "op_s"}
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), edited)

    steps = history_steps(services, history.history_id)
    assert [s.parent_id for s in steps] == [None, history.root_step_id]
    assert steps[1].image_id == result["image_id"] and steps[1].job_id == job.id
    assert job.progress == 1.0


def test_selection_recolor_leaves_everything_else_bit_identical(services: Services) -> None:
    base = _photo()
    stored = store_array(services, base)
    selection = np.zeros(base.shape[:2], dtype=bool)
    selection[20:70, 40:90] = True
    key = services.blobs.put(mask_to_png(selection))
    job = _run(services, EditRequest(
        image_id=stored.id, selection_key=key,
        commands=[{"command": "recolor", "paras": [["Selection"], "blue"]}],
    ))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    edited = image_rgb(services, job.result["image_id"])
    far = ~cv2.dilate(selection.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert np.array_equal(edited[far], base[far])
    inside = edited[25:65, 45:85].reshape(-1, 3).mean(axis=0)
    assert inside[2] > inside[0]  # the red patch is blue now


def test_merged_and_ordered_before_running(services: Services) -> None:
    stored = store_array(services, _photo())
    job = _run(services, EditRequest(image_id=stored.id, commands=[
        {"command": "advice", "paras": ["try a warmer tone"]},
        {"command": "adjust", "paras": ["brightness", 0.2, []]},
        {"command": "adjust", "paras": ["brightness", 0.1, []]},
    ]))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    assert job.result["commands"] == [{"command": "adjust", "paras": ["brightness", 0.3, []]}]
    assert job.result["advice"] == [{"command": "advice", "paras": ["try a warmer tone"]}]


def test_generative_command_fails_naming_the_setting(services: Services) -> None:
    stored = store_array(services, _photo())
    job = _run(services, EditRequest(image_id=stored.id, commands=[
        {"command": "adjust", "paras": ["brightness", 0.2, []]},
        {"command": "instruct", "paras": ["make it snow"]},
    ]))
    assert job.status is JobStatus.FAILED
    assert "CHATEDIT_IP2P_MODEL" in job.error_message and "'instruct'" in job.error_message
    assert job.attempts == 1  # a missing backend is not something a retry fixes
    assert services.queue.outputs(job.id) == []


def test_a_target_this_image_lacks_fails_with_the_label_named(services: Services) -> None:
    stored = store_array(services, _photo())
    job = _run(services, EditRequest(image_id=stored.id, commands=[{"command": "remove", "paras": [["Hat"]]}]))
    assert job.status is JobStatus.FAILED
    assert "no 'Hat'" in job.error_message


def test_bad_commands_are_refused_before_queueing(services: Services) -> None:
    stored = store_array(services, _photo())
    with pytest.raises(InvalidEdit, match="outside"):
        submit_edit(services, EditRequest(image_id=stored.id,
                                          commands=[{"command": "adjust", "paras": ["brightness", 3, []]}]))
    with pytest.raises(InvalidEdit, match="only advice"):
        submit_edit(services, EditRequest(image_id=stored.id, commands=[{"command": "advice", "paras": ["hi"]}]))
    assert services.queue.list() == []


def test_classical_edits_go_to_the_interactive_lane(services: Services) -> None:
    stored = store_array(services, _photo())
    quick = submit_edit(services, EditRequest(image_id=stored.id,
                                              commands=[{"command": "blur", "paras": [["Selection"], 0.5]}]))
    slow = submit_edit(services, EditRequest(image_id=stored.id,
                                             commands=[{"command": "style", "paras": ["watercolor"]}]))
    assert services.queue.get(quick).lane == "interactive"
    assert services.queue.get(slow).lane == "gpu"
