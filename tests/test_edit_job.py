"""The `edit` job on a real worker and database: commands in, an edited PNG with its recipe and a history step out."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.commands import Command, resolve_params
from core.editing import Regions, generative_mask
from core.masks import mask_to_png
from core.recipes import read_recipe
from core.settings import Settings, load_settings
from jobs.edits import EditRequest, InvalidEdit, submit_edit
from jobs.histories import history_steps, start_history
from jobs.images import image_rgb, store_array
from jobs.queue import JobStatus
from jobs.services import Services
from jobs.user_settings import edit_params
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
    assert not recipe.get("timings") and set(result["timings"]) >= {"load_s", "mask_s", "op_s"}
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


def _configured(settings: Settings, tmp_path: Path) -> Services:
    """Services whose CHATEDIT_INPAINT_MODEL names a model (that is never loaded by these tests)."""
    return Services.from_settings(settings.model_copy(update={"inpaint_model": str(tmp_path / "inpaint-model")}))


def test_the_classical_editor_backend_refuses_a_generative_only_command_with_a_sentence(
        services: Services, settings: Settings, tmp_path: Path) -> None:
    configured = _configured(settings, tmp_path)
    try:
        stored = store_array(configured, _photo())
        key = configured.blobs.put(mask_to_png(np.ones(_photo().shape[:2], dtype=bool)))
        job = _run(configured, EditRequest(
            image_id=stored.id, selection_key=key, user_settings={"editor_backend": "classical"},
            commands=[{"command": "change", "paras": [["Selection"], "a red scarf"]}]))
    finally:
        configured.close()
    assert job.status is JobStatus.FAILED
    assert job.error_message == ("'change' needs a generative editor, and your Settings choose the classical editor "
                                 "only; set Editor backend to auto in Settings to run it.")
    assert job.attempts == 1 and services.queue.outputs(job.id) == []


def test_the_classical_editor_backend_removes_with_telea_although_an_inpaint_model_is_configured(
        settings: Settings, services: Services, tmp_path: Path) -> None:
    base = _photo()
    selection = np.zeros(base.shape[:2], dtype=bool)
    selection[20:70, 40:90] = True  # the red patch
    configured = _configured(settings, tmp_path)
    try:
        stored = store_array(configured, base)
        key = configured.blobs.put(mask_to_png(selection))
        job = _run(configured, EditRequest(
            image_id=stored.id, selection_key=key, user_settings={"editor_backend": "classical"},
            commands=[{"command": "remove", "paras": [["Selection"]]}]))
        assert job.status is JobStatus.SUCCEEDED, job.error_message
        recipe = read_recipe(_output_png(configured, job.id))
        edited = image_rgb(configured, job.result["image_id"])
    finally:
        configured.close()
    assert recipe["backend"] == "classical" and recipe["generation"] == []
    inside = edited[30:60, 50:80].reshape(-1, 3).mean(axis=0)
    assert inside[2] > inside[0]  # filled from the blue-grey surroundings: the red patch is gone


def _hair_and_face() -> tuple[np.ndarray, list[str]]:
    names = ["Background", "Hair", "Face"]
    label_map = np.zeros((96, 128), dtype=np.uint8)
    label_map[10:40, 30:100] = 1  # Hair
    label_map[40:80, 40:90] = 2  # Face
    return label_map, names


def test_mask_optimisation_off_leaves_the_generative_mask_as_built() -> None:
    label_map, names = _hair_and_face()
    regions = Regions(shape=label_map.shape, label_map=label_map, label_names=names)
    command = Command("change", (("Hair",), "blue hair"))
    built = regions.mask(["Hair"])
    optimised = generative_mask(command, regions)
    assert optimised is not None and optimised.sum() > built.sum()  # Algorithm 1 widens the hair's edge
    assert np.array_equal(generative_mask(command, regions, optimise=False), built)


@pytest.mark.parametrize("preference, widened", [(None, True), (True, True), (False, False)])
def test_run_generative_honours_the_mask_optimisation_setting(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, preference: bool | None, widened: bool) -> None:
    from core import editing
    from core.generative.executors import GenerativeRun

    label_map, names = _hair_and_face()
    regions = Regions(shape=label_map.shape, label_map=label_map, label_names=names)
    sent: list[np.ndarray] = []

    def backend(image, command, mask, params, settings, hooks):  # what the OpenAI fallback would be handed
        sent.append(mask)
        return GenerativeRun(image=image, task="inpaint", model="recorded", seed=1, scheduler="-", steps=1, steps_run=1)

    monkeypatch.setattr(editing, "_run_openai", backend)
    command = Command("change", (("Hair",), "blue hair"))
    user = edit_params({} if preference is None else {"mask_optimisation": preference})
    params = resolve_params(command, user_settings=user)
    image = np.zeros((*label_map.shape, 3), dtype=np.uint8)
    editing.run_generative(image, command, regions, params,
                           settings=load_settings(data_dir=tmp_path, openai_image_model="gpt-image-1"))
    (mask,) = sent
    assert bool(mask.sum() > regions.mask(["Hair"]).sum()) is widened
    assert bool(np.array_equal(mask, regions.mask(["Hair"]))) is not widened
