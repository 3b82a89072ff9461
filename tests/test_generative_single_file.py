"""Single-file checkpoints (A1111 / civitai ``.safetensors`` in the original LDM layout) as model settings, offline.

The checkpoints are the tiny random-weight pipelines of ``tests.diffusion_support`` rewritten under their original
names (``model.diffusion_model.input_blocks…``, ``first_stage_model.encoder.down…``,
``cond_stage_model.transformer.text_model…``, ``control_model.zero_convs…``), so diffusers' real
original→diffusers conversion runs. Every test runs with name resolution and connections refused: nothing may come
from the hub.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from core.generative.compositing import feathered_alpha
from core.generative.errors import ModelUnavailable, SingleFileConfigMissing
from core.generative.registry import ModelSource, PipelineRegistry
from core.masks import mask_to_png
from db.migrate import upgrade
from jobs.edits import EditRequest, submit_edit
from jobs.images import image_rgb, store_array
from jobs.queue import JobStatus
from jobs.services import Services
from tests.conftest import running_worker
from tests.diffusion_support import (
    FAST,
    TinyModels,
    generative_settings,
    photo,
    write_single_file,
    write_single_file_controlnet,
)


@pytest.fixture(scope="module")
def checkpoints(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The inpainting pipeline and the ControlNet as single files, each with its configs in the folder beside it."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "inpaint": write_single_file(tiny_models.inpaint, root / "tiny-inpaint.safetensors",
                                     config_dir=root / "tiny-inpaint"),
        "controlnet": write_single_file_controlnet(tiny_models.controlnet, root / "tiny-canny.safetensors",
                                                   config_dir=root / "tiny-canny"),
    }


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No host name resolves and no socket connects (SQLite and the in-process worker need neither)."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_the_checkpoints_are_in_the_original_layout_and_their_config_folders_hold_no_weights(
        checkpoints: dict[str, Path]) -> None:
    with safe_open(str(checkpoints["inpaint"]), framework="pt") as f:
        names = list(f.keys())
    prefixes = {name.split(".")[0] for name in names}
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    assert "model.diffusion_model.input_blocks.0.0.weight" in names
    assert "first_stage_model.decoder.mid.attn_1.q.weight" in names
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in names
    assert not any(".down_blocks." in n or ".resnets." in n for n in names)  # no diffusers names
    with safe_open(str(checkpoints["controlnet"]), framework="pt") as f:
        assert "control_model.zero_convs.0.0.weight" in f.keys()
    for checkpoint in checkpoints.values():
        config_dir = checkpoint.with_suffix("")
        assert config_dir.is_dir()
        assert not [p for p in config_dir.rglob("*") if p.suffix in {".safetensors", ".bin", ".ckpt"}]


def test_a_single_file_loads_offline_with_exactly_the_weights_it_was_written_from(
        tmp_path: Path, tiny_models: TinyModels, checkpoints: dict[str, Path]) -> None:
    from diffusers import ControlNetModel, DiffusionPipeline

    settings = generative_settings(tmp_path, tiny_models, inpaint_model=str(checkpoints["inpaint"]),
                                   controlnet_model=str(checkpoints["controlnet"]))
    loaded = PipelineRegistry(settings).get("inpaint", controlnet=True).pipe
    assert type(loaded).__name__ == "StableDiffusionControlNetInpaintPipeline"

    original = DiffusionPipeline.from_pretrained(tiny_models.inpaint)
    original_controlnet = ControlNetModel.from_pretrained(tiny_models.controlnet)
    for component, reference in [("unet", original.unet), ("vae", original.vae),
                                 ("text_encoder", original.text_encoder), ("controlnet", original_controlnet)]:
        got, want = getattr(loaded, component).state_dict(), reference.state_dict()
        assert set(got) == set(want), component
        mismatched = [k for k in want if not np.array_equal(got[k].numpy(), want[k].numpy())]
        assert not mismatched, (component, mismatched[:5])
    assert loaded.tokenizer("a blue shirt").input_ids == original.tokenizer("a blue shirt").input_ids
    assert dict(loaded.scheduler.config) == dict(original.scheduler.config)


def test_change_runs_on_single_file_models_through_the_worker(tmp_path: Path, tiny_models: TinyModels,
                                                              checkpoints: dict[str, Path]) -> None:
    settings = generative_settings(tmp_path, tiny_models, inpaint_model=str(checkpoints["inpaint"]),
                                   controlnet_model=str(checkpoints["controlnet"]))
    svc = Services.from_settings(settings)
    upgrade(svc.database)
    try:
        base = photo()
        stored = store_array(svc, base)
        mask = np.zeros(base.shape[:2], dtype=bool)
        mask[8:40, 16:56] = True
        job_id = submit_edit(svc, EditRequest(
            image_id=stored.id, selection_key=svc.blobs.put(mask_to_png(mask)), user_settings={**FAST, "seed": 3},
            commands=[{"command": "change", "paras": [["Selection"], "a blue shirt"]}],
        ))
        with running_worker(svc, lanes=["interactive", "gpu"]):
            job = svc.queue.wait(job_id, timeout_s=120)
        assert job.status is JobStatus.SUCCEEDED, job.error_message
        edited = image_rgb(svc, job.result["image_id"])
    finally:
        svc.close()
    run = job.result["generation"][0]
    assert run["model"] == str(checkpoints["inpaint"]) and run["controlnet"] == str(checkpoints["controlnet"])
    assert run["steps"] == 2 and run["steps_run"] >= 1  # strength < 1 skips the first step
    assert edited.shape == base.shape
    outside = feathered_alpha(mask, 4) == 0
    assert np.array_equal(edited[outside], base[outside])
    assert not np.array_equal(edited[mask], base[mask])


def test_without_its_config_folder_a_single_file_fails_naming_the_folder_and_the_repo(
        tmp_path: Path, tiny_models: TinyModels, checkpoints: dict[str, Path]) -> None:
    lone = tmp_path / "models" / "lone-inpaint.safetensors"
    lone.parent.mkdir()
    lone.write_bytes(checkpoints["inpaint"].read_bytes())
    settings = generative_settings(tmp_path, tiny_models, inpaint_model=str(lone), controlnet_model=None)
    with pytest.raises(SingleFileConfigMissing) as caught:
        PipelineRegistry(settings).get("inpaint")
    error = caught.value
    assert error.setting == "CHATEDIT_INPAINT_MODEL" and error.source == str(lone)
    assert error.config_dir == str(tmp_path / "models" / "lone-inpaint")
    assert error.repo == "stable-diffusion-v1-5/stable-diffusion-inpainting"  # told by its 9-channel conv_in
    message = str(error)
    assert "could not be loaded" in message and str(tmp_path / "models" / "lone-inpaint") in message
    assert 'hf download stable-diffusion-v1-5/stable-diffusion-inpainting --include "*.json" "*.txt"' in message


def test_a_missing_file_and_a_config_folder_without_its_index_are_named(tmp_path: Path, tiny_models: TinyModels,
                                                                      checkpoints: dict[str, Path]) -> None:
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(ModelUnavailable, match="there is no file"):
        PipelineRegistry(generative_settings(tmp_path, tiny_models, inpaint_model=str(missing))).get("inpaint")

    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(checkpoints["inpaint"].read_bytes())
    (tmp_path / "odd").mkdir()
    settings = generative_settings(tmp_path, tiny_models, inpaint_model=str(odd), controlnet_model=None)
    with pytest.raises(ModelUnavailable, match=r"folder .*odd beside it.* has no model_index\.json"):
        PipelineRegistry(settings).get("inpaint")


def test_the_config_folder_decides_sdxl_before_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "juggernaut-inpaint").mkdir()
    (tmp_path / "juggernaut-inpaint" / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLInpaintPipeline"}))
    assert ModelSource(str(tmp_path / "juggernaut-inpaint.safetensors"), "CHATEDIT_INPAINT_MODEL").looks_sdxl
    assert not ModelSource(str(tmp_path / "plain.safetensors"), "CHATEDIT_INPAINT_MODEL").looks_sdxl
    assert ModelSource(str(tmp_path / "sdxl-lightning.safetensors"), "CHATEDIT_INPAINT_MODEL").looks_sdxl
    assert ModelSource("https://huggingface.co/a/b/blob/main/m.safetensors", "X").config_dir is None
