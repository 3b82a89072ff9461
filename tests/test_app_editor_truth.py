"""The editor tells the truth: the board is the latest reply, what cannot run says so before any job, the selection
and the settings stay what the person made them, and progress, results and replies read as sentences."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from streamlit.testing.v1 import AppTest

from app.ui import selection as sel
from app.ui.editor import FLATTENED_NOTICE, start_from_upload
from app.ui.samples import SAMPLES, sample_png
from core.backends import GENERATIVE_BACKENDS, backend_problem
from core.commands import Command
from core.editing import NeedsGenerativeBackend, check_runnable
from core.rules import load_rules
from core.settings import load_settings
from jobs.conversations import add_message, messages
from jobs.histories import history_steps, start_history
from jobs.images import store_upload
from jobs.selections import selection_key
from jobs.services import Services
from jobs.user_settings import get_preferences
from tests.app_support import open_app
from tests.conftest import running_worker


def _history(services: Services, name: str = "Portrait") -> int:
    return start_history(services, store_upload(services, sample_png(name)).id, title=name).history_id


def _picks(at: AppTest) -> list[tuple[str, bool, bool]]:
    """The board's rows: (label, ticked, greyed)."""
    return [(c.label, c.value, c.disabled) for c in at.checkbox if c.key.startswith("pick_")]


def _last_reply(services: Services, history_id: int) -> str:
    return [m for m in messages(services, history_id) if m.role == "assistant"][-1].content


# ---------------------------------------------------------------- the board is the latest reply


def test_a_reply_without_commands_empties_the_board_and_run_all_cannot_rerun_the_old_one(app_env: Services) -> None:
    services = app_env
    history_id = _history(services)
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("make it brighter").run()
    assert _picks(at) == [("**Brighten the whole image (+0.3)**", True, False)]

    at.chat_input(key="chat_prompt").set_value("make the shirt red").run()  # no segmenter: no shirt to find
    assert not at.exception, at.exception
    assert _picks(at) == []
    assert not any(b.key in ("run_all", "run_selected") for b in at.button)
    assert any("The latest reply has no commands" in c.value for c in at.caption)


# ---------------------------------------------------------------- what no backend can run


def test_a_command_no_backend_can_run_is_greyed_with_its_setting_and_left_out_of_run_all(
        app_env: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    services = app_env
    history_id = _history(services)
    add_message(services, history_id, "assistant", "Watercolour, and brighter.", commands=[
        {"command": "style", "paras": ["watercolor"], "valid": True, "reason": None},
        {"command": "adjust", "paras": ["brightness", 0.2, []], "valid": True, "reason": None}])
    at = open_app(history=str(history_id))
    assert _picks(at) == [("**Restyle the whole image as “watercolor”**", False, True),
                          ("**Brighten the whole image (+0.2)**", True, False)]
    assert any("CHATEDIT_BASE_MODEL" in c.value for c in at.caption)
    at.button(key="run_all").click().run()
    payload = services.queue.get(at.session_state["job_id"]).payload
    assert [c["command"] for c in payload["commands"]] == ["adjust"]

    monkeypatch.setenv("CHATEDIT_BASE_MODEL", "some/sd-model")
    assert _picks(open_app(history=str(history_id)))[0] == ("**Restyle the whole image as “watercolor”**", True, False)


def test_the_board_the_job_and_the_settings_page_ask_one_table() -> None:
    settings = load_settings()
    rules = load_rules()
    for backend in GENERATIVE_BACKENDS:
        for name in backend.commands:
            if rules.commands[name].classical_fallback:
                assert backend_problem(name, settings) is None  # remove falls back to OpenCV
                continue
            problem = backend_problem(name, settings)
            assert problem is not None and backend.variable in problem
            with pytest.raises(NeedsGenerativeBackend) as raised:
                check_runnable([Command(name, ("x",) if name != "change" else (("Selection",), "x"))], rules, settings)
            assert str(raised.value) == problem
            assert backend_problem(name, settings.model_copy(update={backend.field: "some/model"})) is None
            assert backend_problem(name, settings.model_copy(update={"openai_image_model": "dall-e-2"})) is None
            assert "classical editor only" in str(backend_problem(name, settings, classical_only=True))
    assert backend_problem("adjust", settings) is None


# ---------------------------------------------------------------- the selection is kept with the history


def test_the_selection_survives_a_reload_and_clearing_it_does_too(app_env: Services) -> None:
    services = app_env
    history_id = _history(services)
    at = open_app(history=str(history_id))
    height, width = SAMPLES["Portrait"]().shape[:2]
    strokes = np.zeros((height, width, 4), np.uint8)
    strokes[:40, :40, 3] = 255
    at.session_state[sel.STROKES] = strokes
    at.button(key="apply_strokes").click().run()
    assert selection_key(services, history_id) is not None

    reloaded = open_app(history=str(history_id))  # a new session: nothing in session_state
    selected = reloaded.session_state[sel.SELECTION]
    assert selected is not None and selected[:40, :40].all() and not selected[50:, 50:].any()
    assert any(c.value.startswith("Selected") for c in reloaded.caption)
    reloaded.chat_input(key="chat_prompt").set_value("make the selection red").run()
    assert _picks(reloaded) == [("**Recolor the selection to red**", True, False)]

    reloaded.button(key="clear_selection").click().run()
    assert selection_key(services, history_id) is None
    again = open_app(history=str(history_id))
    assert again.session_state[sel.SELECTION] is None
    again.chat_input(key="chat_prompt").set_value("make the selection red").run()
    reply = _last_reply(services, history_id)
    assert "Nothing is selected" in reply and "its parts are none" not in reply


def test_without_parts_a_request_about_one_says_how_to_select_it(app_env: Services) -> None:
    services = app_env
    history_id = _history(services)
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("make the shirt red").run()
    reply = _last_reply(services, history_id)
    assert "Selection tools" in reply and "“make the selection red”" in reply and "(its parts are" not in reply


# ---------------------------------------------------------------- settings stay the person's


def test_a_changed_setting_is_kept_after_saving_and_reloading(app_env: Services) -> None:
    services = app_env
    at = open_app("settings")
    at.number_input(key="pref_cfg_scale").set_value(9.0)  # changed, without ticking "Set my own"
    next(b for b in at.button if b.label == "Save settings").click().run()
    assert not at.exception, at.exception
    assert "cfg_scale = 9.0" in at.success[0].value
    assert get_preferences(services) == {"cfg_scale": 9.0}

    reloaded = open_app("settings")
    assert reloaded.number_input(key="pref_cfg_scale").value == 9.0
    assert reloaded.checkbox(key="use_cfg_scale").value
    reloaded.number_input(key="pref_steps").set_value(35)  # saving another one keeps the first
    next(b for b in reloaded.button if b.label == "Save settings").click().run()
    assert get_preferences(services) == {"cfg_scale": 9.0, "steps": 35}


# ---------------------------------------------------------------- sentences, not JSON


def test_the_done_notice_and_the_result_caption_read_as_sentences(app_env: Services) -> None:
    services = app_env
    history_id = _history(services, "Still life")
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("make it darker, much darker").run()
    assert _picks(at) == [("**Darken the whole image (-0.6)**", True, False)]  # one adjustment, not two
    with running_worker(services, lanes=["interactive"]):
        at.button(key="run_all").click().run()
        job = services.queue.list(kind="edit", limit=1)[0]
        assert services.queue.wait(job.id, timeout_s=60).terminal
    at.run()
    assert not at.exception, at.exception
    assert at.success[0].value.startswith("Done: Darken the whole image (-0.6).")
    assert any(c.value == "Ran: Darken the whole image (-0.6)" for c in at.caption)
    finished = services.queue.get(job.id)
    assert finished.progress_message and finished.progress_message.endswith(".")
    for text in (at.success[0].value, finished.progress_message):
        assert "{" not in text and "[" not in text


def test_a_request_in_another_language_is_told_which_languages_are_understood(app_env: Services) -> None:
    services = app_env
    history_id = _history(services)
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("rends la chemise rouge").run()
    reply = _last_reply(services, history_id)
    assert "English and Chinese" in reply and "英文和中文" in reply


# ---------------------------------------------------------------- links and uploads


def test_the_editor_answers_at_its_own_address(app_env: Services) -> None:
    """``/editor?history=N`` (a pasted link) must be a page's URL path: Streamlit serves the default page only at ``/``
    and answers its ``url_path`` with "Page not found"."""

    def script() -> None:
        import streamlit as st

        from app.ui.navigation import pages
        from jobs.services.permissions import Actor

        local_admin = Actor(id=1, name="local", display_name="", role="admin")
        st.text("\n".join(f"{page.url_path}|{page.title}" for page in pages(local_admin)))

    at = AppTest.from_function(script).run()
    served = dict(line.split("|") for line in at.text[0].value.splitlines())
    assert served.get("") == "Editor" and served.get("editor") == "Editor"

    history_id = _history(app_env, "Still life")
    linked = open_app(history=str(history_id))
    linked.switch_page("views/editor.py").run()  # AppTest picks the page whose URL path is "editor"
    assert not linked.exception, linked.exception
    assert linked.title[0].value == "Still life"


def _png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_upload_with_transparency_is_accepted_and_the_editor_says_it_was_flattened(app_env: Services) -> None:
    services = app_env
    rgba = PILImage.new("RGBA", (64, 48), (200, 30, 30, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 32, 48))  # the left half is transparent
    history_id = start_from_upload(services, _png(rgba), "cut-out")
    assert isinstance(history_id, int)
    at = open_app(history=str(history_id))
    assert any(i.value == FLATTENED_NOTICE for i in at.info)
    assert any(i.value == FLATTENED_NOTICE for i in open_app(history=str(history_id)).info)  # after a reload too

    opaque = start_from_upload(services, _png(PILImage.new("RGBA", (64, 48), (10, 200, 10, 255))), "opaque")
    assert not any(i.value == FLATTENED_NOTICE for i in open_app(history=str(opaque)).info)
    assert history_steps(services, history_id)[0].params == {"flattened_transparency": True}
