"""The Settings page's backends (planner choice with what is missing, editors) and LoRA adapters with weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ui.settings import available_loras, editor_rows, planner_problem
from core.settings import load_settings
from jobs.services import Services
from jobs.user_settings import (
    InvalidPreferences,
    edit_params,
    get_preferences,
    save_preferences,
    validate_preferences,
)
from tests.app_support import open_app


def test_planners_say_what_each_needs_and_a_chosen_unconfigured_one_is_warned(
        app_env: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app("settings")
    text = " ".join(m.value for m in at.markdown)
    assert "**rules** (yours)" in text
    assert "set CHATEDIT_OPENAI_MODEL" in text and "set CHATEDIT_LOCAL_LLM" in text
    assert not at.warning
    save_preferences(app_env, {"planner": "local"})
    at = open_app("settings")
    assert at.warning[0].value.startswith("Your planner, local, is not configured: run `chatedit models "
                                          "install-planner smollm2`, or set CHATEDIT_LOCAL_LLM")

    monkeypatch.setenv("CHATEDIT_LOCAL_LLM", "Qwen/Qwen2.5-0.5B-Instruct")
    at = open_app("settings")
    assert not at.warning and "set CHATEDIT_LOCAL_LLM" not in " ".join(m.value for m in at.markdown)


def test_editor_backends_table_names_the_setting_for_each_missing_one() -> None:
    rows = {r["commands"]: r for r in editor_rows(load_settings(inpaint_model="runwayml/sd-inpainting"))}
    assert rows["change, remove"]["available"] == "yes" and rows["change, remove"]["backend"] == "runwayml/sd-inpainting"
    assert rows["face, style"]["available"] == "no" and "CHATEDIT_BASE_MODEL" in rows["face, style"]["note"]
    assert rows["instruct"]["note"] == "Not configured: set CHATEDIT_IP2P_MODEL to an InstructPix2Pix model to enable it."


def test_loras_from_the_folder_are_chosen_with_weights_and_reach_the_edit_parameters(
        app_env: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "loras"
    folder.mkdir()
    for name in ("watercolour.safetensors", "film-grain.safetensors", "notes.txt"):
        (folder / name).write_bytes(b"x")
    monkeypatch.setenv("CHATEDIT_LORA_DIR", str(folder))
    assert available_loras(load_settings(lora_dir=folder)) == ["film-grain.safetensors", "watercolour.safetensors"]

    at = open_app("settings")
    assert [c.key for c in at.checkbox if c.key.startswith("lora_use_")] == [
        "lora_use_film-grain.safetensors", "lora_use_watercolour.safetensors"]
    at.checkbox(key="lora_use_watercolour.safetensors").check()
    at.slider(key="lora_weight_watercolour.safetensors").set_value(0.6)
    next(b for b in at.button if b.label == "Save settings").click().run()
    assert not at.exception, at.exception
    stored = get_preferences(app_env)
    assert stored == {"loras": [{"name": "watercolour.safetensors", "weight": 0.6}]}
    assert at.success[0].value == "Saved: loras = watercolour.safetensors × 0.6"
    assert edit_params(stored) == stored  # the edit job gets them as the person's parameters

    (folder / "watercolour.safetensors").unlink()
    at = open_app("settings")
    assert "dropped when you save: watercolour.safetensors" in at.warning[0].value


def test_no_lora_folder_says_how_to_set_one(app_env: Services) -> None:
    at = open_app("settings")
    assert any("set CHATEDIT_LORA_DIR" in c.value for c in at.caption)
    assert not any(c.key.startswith("lora_use_") for c in at.checkbox)


def test_lora_preferences_are_checked() -> None:
    with pytest.raises(InvalidPreferences) as err:
        validate_preferences({"loras": [{"name": "../../etc/x.safetensors", "weight": 1.0},
                                        {"name": "a.safetensors", "weight": 9},
                                        {"name": "b.safetensors", "weight": 1}, {"name": "b.safetensors", "weight": 1}]})
    message = str(err.value)
    assert "not '../../etc/x.safetensors'" in message and "between -2 and 2, not 9" in message
    assert "b.safetensors is listed twice" in message
    assert validate_preferences({"loras": []}) == {}
    assert planner_problem("rules", load_settings()) is None
    assert planner_problem("openai", load_settings(openai_model="gpt-4o-mini")) is None


def test_planner_model_editor_backend_and_mask_optimisation_are_checked_stored_and_reach_the_jobs(
        app_env: Services) -> None:
    at = open_app("settings")
    labels = {c.key: c.label for c in at.checkbox}
    assert labels["use_editor_backend"].endswith("(built-in: auto)")
    assert labels["use_mask_optimisation"].endswith("(built-in: True)")
    assert labels["use_planner_model"].endswith("(built-in: none)")
    at.checkbox(key="use_planner_model").check()
    at.text_input(key="pref_planner_model").set_value("my model")
    at.checkbox(key="use_editor_backend").check()
    at.selectbox(key="pref_editor_backend").set_value("classical")
    at.checkbox(key="use_mask_optimisation").check()
    at.toggle(key="pref_mask_optimisation").set_value(False)
    at.button[0].click().run()  # the form's submit button
    assert "Planner model (openai planner) is a model name of at most 200 characters without spaces, not 'my model'" \
        in at.error[0].value and at.error[0].value.endswith("Nothing was changed.")
    assert get_preferences(app_env) == {}

    at.text_input(key="pref_planner_model").set_value(" llama3.1:8b ")
    at.button[0].click().run()
    assert not at.exception, at.exception
    stored = get_preferences(app_env)
    assert stored == {"planner_model": "llama3.1:8b", "editor_backend": "classical", "mask_optimisation": False}
    assert edit_params(stored) == {"editor_backend": "classical", "mask_optimisation": False}
    text = " ".join(m.value for m in at.markdown)
    assert "Model: `llama3.1:8b` (yours)." in text and "set CHATEDIT_OPENAI_MODEL" not in text
    assert at.info[0].value.startswith("Your editor backend is **classical**")
    assert "change, face, instruct, style are refused" in at.info[0].value


def test_editor_backend_and_planner_model_values_are_checked() -> None:
    with pytest.raises(InvalidPreferences) as err:
        validate_preferences({"editor_backend": "diffusers", "planner_model": "", "mask_optimisation": "off"})
    message = str(err.value)
    assert "Editor backend is one of auto, classical, not 'diffusers'" in message
    assert "Planner model (openai planner) is a model name" in message
    assert "Mask optimisation is on or off (true or false), not 'off'" in message
    assert validate_preferences({"planner_model": "Qwen/Qwen2.5-7B-Instruct", "editor_backend": "auto"}) == {
        "planner_model": "Qwen/Qwen2.5-7B-Instruct", "editor_backend": "auto"}
