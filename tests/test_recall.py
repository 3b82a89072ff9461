"""Recall: the recipe inside ChatEdit PNGs and the webui's ``parameters`` text, mapped onto our settings."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from core.recall import parse_parameters, recall_from_png
from core.recipes import RECIPE_KEY, Recipe

A1111 = ("masterpiece, a portrait of a woman, red coat, (snowy street:1.2), bokeh\n"
         "Negative prompt: lowres, bad anatomy, watermark\n"
         "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567890, Size: 512x768, "
         "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, "
         'Lora hashes: "film: abc123, grain: def456", Version: v1.6.0')


def _png(text: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_itxt(key, value)
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def test_a_webui_parameters_text_maps_steps_guidance_seed_sampler_and_strength() -> None:
    recalled = parse_parameters(A1111)
    assert recalled.prompt == "masterpiece, a portrait of a woman, red coat, (snowy street:1.2), bokeh"
    assert recalled.negative_prompt == "lowres, bad anatomy, watermark"
    assert recalled.settings == {"steps": 28, "scheduler": "DPM++ 2M Karras", "cfg_scale": 6.5,
                                 "seed": 1234567890, "strength": 0.45}
    assert recalled.not_mapped == {
        "Negative prompt": "lowres, bad anatomy, watermark", "Size": "512x768", "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly", "Lora hashes": "film: abc123, grain: def456", "Version": "v1.6.0"}


def test_without_a_negative_prompt_line_everything_before_the_settings_is_the_prompt() -> None:
    recalled = parse_parameters("a cat, sitting on a mat,\nwith a hat\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                                "Seed: 42, Size: 512x512")
    assert recalled.prompt == "a cat, sitting on a mat,\nwith a hat"
    assert recalled.negative_prompt == ""
    assert recalled.settings == {"steps": 20, "scheduler": "Euler a", "cfg_scale": 7.0, "seed": 42}
    assert recalled.not_mapped == {"Size": "512x512"}


def test_a_separate_schedule_type_and_an_unknown_sampler() -> None:
    newer = parse_parameters("x\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1")
    assert newer.settings["scheduler"] == "DPM++ 2M Karras"
    other = parse_parameters("x\nSteps: 20, Sampler: Heun, CFG scale: 7, Seed: 1")
    assert "scheduler" not in other.settings and other.not_mapped["Sampler"] == "Heun"


def test_a_prompt_alone_has_no_settings_line() -> None:
    recalled = parse_parameters("just a prompt, with: a colon")
    assert recalled.prompt == "just a prompt, with: a colon" and recalled.settings == {}


def test_recall_reads_the_png_chunks_and_prefers_chatedit_s_own_recipe() -> None:
    recipe = Recipe(commands=[{"command": "change", "paras": [["Background"], "a beach"]}],
                    params=[{"strength": 0.8, "cfg_scale": 7.5, "mask_blur": 4, "steps": 30}], backend="diffusers",
                    seed=99, generation=[{"command": "change", "seed": 99, "scheduler": "Euler", "steps": 25}])
    recalled = recall_from_png(_png({RECIPE_KEY: recipe.to_json(), "parameters": A1111}))
    assert recalled is not None and recalled.source == "chatedit"
    assert recalled.commands == [{"command": "change", "paras": [["Background"], "a beach"]}]
    assert recalled.settings == {"strength": 0.8, "cfg_scale": 7.5, "mask_blur": 4, "steps": 25, "scheduler": "Euler",
                                 "seed": 99}
    webui = recall_from_png(_png({"parameters": A1111}))
    assert webui is not None and webui.source == "parameters" and webui.settings["seed"] == 1234567890


def test_a_classical_recipe_recalls_its_commands_but_no_diffusion_settings() -> None:
    recipe = Recipe(commands=[{"command": "adjust", "paras": ["brightness", 0.3, []]}],
                    params=[{"strength": 0.75, "steps": 30}], backend="classical", seed=None)
    recalled = recall_from_png(_png({RECIPE_KEY: recipe.to_json()}))
    assert recalled is not None and recalled.commands == [{"command": "adjust", "paras": ["brightness", 0.3, []]}]
    assert recalled.settings == {}


def test_plain_images_and_other_files_recall_nothing() -> None:
    assert recall_from_png(_png({})) is None
    assert recall_from_png(_png({"Software": "GIMP"})) is None
    assert recall_from_png(b"not an image") is None
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    assert recall_from_png(jpeg.getvalue()) is None


def test_a_huge_parameters_text_from_an_uploaded_file_is_read_in_one_pass() -> None:
    words = "masterpiece " * 80_000  # one long line without a colon: quadratic for the webui's own expression
    assert parse_parameters(words).prompt == words.strip()
    recalled = parse_parameters(words + "\nSteps: 20, Sampler: Euler, CFG scale: 7")
    assert recalled.prompt == words.strip() and recalled.settings == {"steps": 20, "scheduler": "Euler",
                                                                      "cfg_scale": 7.0}
