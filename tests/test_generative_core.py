"""core.generative without the queue: registry sharing and LRU, schedulers, cancel within one step, LoRA, face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.commands import Command
from core.editing import Regions, run_generative
from core.generative.compositing import composite, feathered_alpha
from core.generative.errors import GenerationInterrupted, ModelNotConfigured
from core.generative.executors import StepHooks, instruct, restyle
from core.generative.loras import UnknownLora, list_loras
from core.generative.registry import PipelineRegistry
from core.generative.schedulers import UnknownScheduler
from core.settings import Settings
from tests.diffusion_support import FAST, TinyModels, generative_settings, photo, tiny_lora


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    tiny_lora(tiny_models.base, folder)
    return folder


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels, lora_dir: Path) -> Settings:
    return generative_settings(tmp_path_factory.mktemp("settings"), tiny_models, lora_dir=lora_dir)


@pytest.fixture(scope="module")
def registry(settings: Settings) -> PipelineRegistry:
    return PipelineRegistry(settings)


PARAMS = {**FAST, "scheduler": "DPM++ 2M", "cfg_scale": 7.0, "strength": 0.6, "mask_blur": 2, "seed": 5}


def test_pipelines_on_one_model_share_their_weights(registry: PipelineRegistry) -> None:
    img2img = registry.get("img2img").pipe
    txt2img = registry.get("txt2img").pipe
    assert txt2img.unet is img2img.unet and txt2img.vae is img2img.vae
    assert registry.get("img2img").pipe is img2img  # served from the LRU


def test_the_cpu_lru_is_bounded_by_models(settings: Settings) -> None:
    small = PipelineRegistry(settings, max_cpu_models=1)
    small.get("img2img")
    small.get("txt2img")  # same model: shared, nothing evicted
    small.get("instruct")
    assert [k.task for k in small.loaded] == ["instruct"]


def test_an_unconfigured_model_names_its_setting(tmp_path: Path, tiny_models: TinyModels) -> None:
    registry = PipelineRegistry(generative_settings(tmp_path, tiny_models, ip2p_model=None))
    with pytest.raises(ModelNotConfigured, match="CHATEDIT_IP2P_MODEL"):
        registry.get("instruct")


def test_schedulers_are_chosen_by_name(registry: PipelineRegistry) -> None:
    run = restyle(registry, photo(), "ink", {**PARAMS, "scheduler": "Euler a", "controlnet": False})
    assert type(registry.get("img2img").pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert run.scheduler == "Euler a"
    with pytest.raises(UnknownScheduler, match="DPM\\+\\+ 2M"):
        restyle(registry, photo(), "ink", {**PARAMS, "scheduler": "Heun++ 9"})


@pytest.mark.parametrize("task", ["img2img", "instruct"])
def test_a_stop_request_ends_the_run_within_one_step(registry: PipelineRegistry, task: str) -> None:
    seen: list[float] = []
    hooks = StepHooks(on_progress=seen.append, should_stop=lambda: len(seen) >= 2)
    params = {**PARAMS, "steps": 20, "strength": 1.0}
    with pytest.raises(GenerationInterrupted) as stopped:
        if task == "instruct":
            instruct(registry, photo(), "snow", params, hooks)
        else:
            restyle(registry, photo(), "ink", params, hooks)
    assert stopped.value.steps_run == 2 and len(seen) == 2  # asked to stop after step 2: no step 3


def test_a_lora_round_trip_changes_the_output_and_is_recorded(registry: PipelineRegistry, lora_dir: Path) -> None:
    assert list(list_loras(lora_dir)) == ["film"]
    image = photo()
    plain = restyle(registry, image, "ink", {**PARAMS, "controlnet": False}, lora_dir=lora_dir)
    with_lora = restyle(registry, image, "ink", {**PARAMS, "controlnet": False, "loras": [{"name": "film", "weight": 1.0}]},
                        lora_dir=lora_dir)
    plain_again = restyle(registry, image, "ink", {**PARAMS, "controlnet": False}, lora_dir=lora_dir)
    assert with_lora.loras == [{"name": "film", "weight": 1.0}] and plain.loras == []
    assert not np.array_equal(with_lora.image, plain.image)
    assert np.array_equal(plain_again.image, plain.image)  # unselected adapters are off again
    assert "film" in {n for names in registry.get("img2img").pipe.get_list_adapters().values() for n in names}
    with pytest.raises(UnknownLora, match="available: film"):
        restyle(registry, image, "ink", {**PARAMS, "loras": [{"name": "../etc/passwd"}]}, lora_dir=lora_dir)


def test_face_retouch_changes_only_the_face(registry: PipelineRegistry, settings: Settings) -> None:
    image = photo()
    label_map = np.zeros(image.shape[:2], dtype=np.uint8)
    label_map[12:36, 20:44] = 1
    regions = Regions(shape=image.shape[:2], label_map=label_map, label_names=["Background", "Face"])
    run = run_generative(image, Command("face", ("smile",)), regions, {**PARAMS, "strength": 0.5},
                         settings=settings, registry=registry)
    outside = feathered_alpha(label_map == 1, 2) == 0
    assert np.array_equal(run.image[outside], image[outside])
    assert not np.array_equal(run.image, image)
    assert run.generation["task"] == "img2img" and run.generation["command"] == "face"


def test_compositing_is_exact_outside_the_feather() -> None:
    original, generated = photo(), np.full((48, 64, 3), 255, np.uint8)
    mask = np.zeros((48, 64), bool)
    mask[20:30, 20:30] = True
    alpha = feathered_alpha(mask, 4)
    out = composite(original, generated, alpha)
    assert np.array_equal(out[alpha == 0], original[alpha == 0])
    assert np.array_equal(out[mask], generated[mask])
    assert (alpha[alpha > 0] > 0).all() and alpha.max() == 1.0
