"""Every page's logic through streamlit.testing's AppTest, on a real database, with a real worker where jobs run."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.ui import selection as sel
from app.ui.samples import SAMPLES, sample_png
from core.rules import load_rules
from jobs.conversations import add_message, messages
from jobs.gallery import base_step_id, list_histories
from jobs.histories import history_steps, start_history
from jobs.images import image_rgb, store_upload
from jobs.queue import JobStatus
from jobs.services import Services
from jobs.user_settings import get_preferences
from tests.app_support import open_app
from tests.conftest import running_worker


def _history(services: Services, name: str = "Portrait") -> int:
    stored = store_upload(services, sample_png(name))
    return start_history(services, stored.id, title=name).history_id


def _wait_for_job(at: AppTest, services: Services) -> None:
    """Wait for the newest job (the page may already have seen it end), then let the page show the outcome."""
    job_id = services.queue.list(kind="edit", limit=1)[0].id
    assert services.queue.wait(job_id, timeout_s=60).terminal
    at.run()
    assert not at.exception, at.exception


# ---------------------------------------------------------------- editor


def test_editor_without_history_asks_for_a_photo(app_env: Services) -> None:
    at = open_app()
    assert "Upload a photo or pick a sample image" in at.info[0].value


def test_sample_chat_run_all_set_as_base_and_undo(app_env: Services) -> None:
    services = app_env
    at = open_app()
    at.sidebar.selectbox(key="sample_choice").select("Still life").run()
    at.sidebar.button(key="start_sample").click().run()
    history_id = int(at.query_params["history"][0] if isinstance(at.query_params["history"], list)
                     else at.query_params["history"])
    assert at.title[0].value == "Still life"
    assert any("No segmenter is configured" in i.value and "CHATEDIT_SEGMENTER" in i.value for i in at.info)

    at.chat_input(key="chat_prompt").set_value("make it brighter").run()
    assert [m.role for m in messages(services, history_id)] == ["user", "assistant"]
    picks = [c for c in at.checkbox if c.key.startswith("pick_")]
    assert [c.label for c in picks] == ["**Brighten the whole image (+0.3)**"] and picks[0].value

    with running_worker(services, lanes=["interactive"]):
        at.button(key="run_all").click().run()
        assert services.queue.list(kind="edit")
        _wait_for_job(at, services)
    root, result = history_steps(services, history_id)
    assert result.parent_id == root.id
    assert image_rgb(services, result.image_id).mean() > image_rgb(services, root.image_id).mean()
    assert at.session_state["result_step_id"] == result.id
    assert at.success[0].value.startswith("Done")

    at.button(key="set_base").click().run()
    assert base_step_id(services, history_id) == result.id
    at.button(key="undo").click().run()
    assert base_step_id(services, history_id) == root.id
    assert at.session_state["result_step_id"] == result.id  # the undone step stays on show, to redo


def test_the_conversation_and_base_come_back_in_a_new_session(app_env: Services) -> None:
    services = app_env
    history_id = _history(services)
    first = open_app(history=str(history_id))
    first.chat_input(key="chat_prompt").set_value("increase the contrast").run()
    again = open_app(history=str(history_id))  # a reload: a new session, the same URL
    shown = [m.markdown[0].value for m in again.chat_message]
    assert shown[0] == "increase the contrast" and "contrast" in shown[1]
    assert any(c.key.startswith("pick_") for c in again.checkbox)


def test_an_unknown_history_in_the_url_is_a_sentence(app_env: Services) -> None:
    at = open_app(history="999")
    assert at.error[0].value.startswith("There is no edit history '999'")


def test_board_shows_the_reason_in_red_and_reacts_to_inline_edits(app_env: Services) -> None:
    services = app_env
    history_id = _history(services)
    add_message(services, history_id, "assistant", "Here you go.", commands=[
        {"command": "adjust", "paras": ["brightness", 0.3, []], "valid": True, "reason": None},
        {"command": "recolor", "paras": [["Hair"], "blue"], "valid": False, "reason": "no Hair here"},
        {"raw": "paint it", "valid": False, "reason": "This item is not a command object."},
    ])
    at = open_app(history=str(history_id))
    reds = [m.value for m in at.markdown if m.value.startswith(":red[")]
    assert any("Hair" in r for r in reds) and any("not a command object" in r for r in reds)
    amount = next(n for n in at.number_input if n.label == "Amount")
    amount.set_value(3.0).run()
    reds = [m.value for m in at.markdown if m.value.startswith(":red[")]
    assert any("[-1, 1]" in r for r in reds), reds
    assert at.button(key="run_all").disabled  # nothing valid is left to run


def test_a_queued_edit_without_workers_says_so_and_cancel_stops_it(app_env: Services) -> None:
    services = app_env
    history_id = _history(services)
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("make it warmer").run()
    at.button(key="run_selected").click().run()
    job_id = at.session_state["job_id"]
    assert "no worker serving the 'interactive' lane is alive" in at.get("progress")[0].proto.text
    at.button(key=f"cancel_{job_id}").click().run()
    assert services.queue.get(job_id).status is JobStatus.CANCELLED
    at.run()
    assert any("The edit was cancelled; the base is unchanged." == e.value for e in at.error)
    assert len(history_steps(services, history_id)) == 1


def test_a_failed_edit_shows_the_jobs_sentence(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    services = app_env
    # The app names an inpainting model, so the board lets `change` run; the worker has none, so the job fails.
    monkeypatch.setenv("CHATEDIT_INPAINT_MODEL", "some/inpainting-model")
    history_id = _history(services)
    add_message(services, history_id, "assistant", "Changing the background.", commands=[
        {"command": "change", "paras": [["Selection"], "a beach"], "valid": True, "reason": None}])
    at = open_app(history=str(history_id))
    at.session_state[sel.SELECTION] = np.ones(SAMPLES["Portrait"]().shape[:2], bool)
    at.session_state[sel.SELECTION_IMAGE] = history_steps(services, history_id)[0].image_id
    at.run()
    with running_worker(services, lanes=["interactive", "gpu"]):
        at.button(key="run_all").click().run()
        _wait_for_job(at, services)
    assert any(e.value.startswith("The edit failed:") and "CHATEDIT_INPAINT_MODEL" in e.value for e in at.error)


def test_brush_and_click_selection_become_the_selection_target(app_env: Services) -> None:
    services = app_env
    history_id = _history(services, "Portrait")
    at = open_app(history=str(history_id))
    height, width = SAMPLES["Portrait"]().shape[:2]
    strokes = np.zeros((height // 2, width // 2, 4), np.uint8)
    strokes[:20, :20, 3] = 255  # the canvas is shown smaller than the image
    at.session_state[sel.STROKES] = strokes
    at.button(key="apply_strokes").click().run()
    selected = at.session_state[sel.SELECTION]
    assert selected.shape == (height, width) and selected[:40, :40].all() and not selected[50:, 50:].any()

    at.radio(key="mask_tool").set_value("Click to select").run()
    at.session_state[sel.CLICK] = (10, 370)  # the floor
    at.run()
    assert at.session_state[sel.SELECTION][370, 10] and at.session_state[sel.SELECTION][:40, :40].all()
    at.button(key="invert_selection").click().run()
    assert not at.session_state[sel.SELECTION][370, 10]
    at.button(key="invert_selection").click().run()

    at.chat_input(key="chat_prompt").set_value("make the selection red").run()
    picks = [c for c in at.checkbox if c.key.startswith("pick_")]
    assert picks and picks[0].value and "the selection" in picks[0].label
    at.button(key="run_all").click().run()
    payload = services.queue.get(at.session_state["job_id"]).payload
    mask = sel.to_png(at.session_state[sel.SELECTION])
    assert services.blobs.get(payload["selection_key"]) == mask
    at.button(key="clear_selection").click().run()
    assert at.session_state[sel.SELECTION] is None


def test_selection_arithmetic() -> None:
    base = np.zeros((4, 6), bool)
    region = np.zeros((4, 6), bool)
    region[:2] = True
    added = sel.combine(base, region, "add")
    assert added.sum() == 12
    assert sel.combine(added, region[:, :3].repeat(2, axis=1), "erase").sum() == 0
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:, 5:] = 200
    assert sel.region_at(rgb, (1, 1), 10)[:, :5].all() and not sel.region_at(rgb, (1, 1), 10)[:, 5:].any()


# ---------------------------------------------------------------- gallery, settings, status, manual


def test_gallery_cards_filters_detail_rerun_and_continue(app_env: Services) -> None:
    services = app_env
    history_id = _history(services, "Sunset landscape")
    editor = open_app(history=str(history_id))
    editor.chat_input(key="chat_prompt").set_value("make it brighter").run()
    with running_worker(services, lanes=["interactive"]):
        editor.button(key="run_all").click().run()
        _wait_for_job(editor, services)
    other = _history(services, "Portrait")

    at = open_app("gallery")
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    assert titles[:2] == ["**Portrait**", "**Sunset landscape**"]
    at.toggle(key="gallery_failures").set_value(True).run()
    assert "No edit history matches." in at.info[0].value

    at.toggle(key="gallery_failures").set_value(False).run()
    at.button(key=f"open_{history_id}").click().run()
    assert at.title[0].value == "Sunset landscape"
    _, step = history_steps(services, history_id)
    assert any("Brighten the whole image (+0.3)" in m.value for m in at.markdown)
    at.button(key=f"rerun_{step.id}").click().run()
    assert "Queued again as job" in at.success[0].value
    assert list_histories(services, owner_id=None)[0].id == history_id
    at.button(key="continue_open").click().run()
    assert at.title[0].value == "Sunset landscape"  # the editor, on this history
    assert other != history_id


def test_settings_are_validated_and_stored(app_env: Services) -> None:
    services = app_env
    at = open_app("settings")
    at.checkbox(key="use_steps").check()
    at.number_input(key="pref_steps").set_value(500)
    at.button[0].click().run()  # the form's submit button
    assert "Steps must be between 1 and 150, not 500" in at.error[0].value
    assert get_preferences(services) == {}
    at.number_input(key="pref_steps").set_value(20)
    at.checkbox(key="use_controlnet").check()
    at.toggle(key="pref_controlnet").set_value(True)
    at.button[0].click().run()
    assert get_preferences(services) == {"steps": 20, "controlnet": True}
    assert at.success[0].value.startswith("Saved: steps = 20")
    at.button(key="reset_preferences").click().run()
    assert get_preferences(services) == {}


def test_status_shows_database_workers_queue_and_backends(app_env: Services) -> None:
    services = app_env
    at = open_app("status")
    assert "No worker is alive" in at.error[0].value
    with running_worker(services, lanes=["interactive", "gpu", "batch"]):
        services.queue.wait(services.queue.enqueue("noop", {}), timeout_s=30)
        at.run()
    assert at.success[0].value.startswith("Database reachable")
    tables = at.table
    workers = tables[0].value
    assert sorted(workers["lanes"][0].split(", ")) == ["batch", "gpu", "interactive"]
    queue = tables[1].value
    assert int(queue.loc[queue["lane"] == "interactive", "succeeded"].iloc[0]) == 1
    backends = tables[-1].value
    assert "CHATEDIT_SEGMENTER" in " ".join(backends["note"])


def test_manual_lists_every_command_in_english_and_chinese(app_env: Services) -> None:
    at = open_app("manual")
    table = at.table[0].value
    rules = load_rules()
    assert list(table["command"]) == rules.names
    assert list(table["说明"]) == [r.description_zh for r in rules.commands.values()]
    assert len(at.tabs) == 2
