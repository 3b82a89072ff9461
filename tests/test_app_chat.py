"""The editor's chat with every planner kind: the openai planner streaming from a local OpenAI-compatible server,
Advise with a vision model, the local planner as a `plan` job on a worker, and each failure as a sentence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.ui import chat
from app.ui.samples import sample_png
from core.settings import Settings
from jobs.conversations import (
    add_message,
    add_pending_plan,
    messages,
    pending_plan_job,
    resolve_pending_plan,
)
from jobs.histories import start_history
from jobs.images import store_upload
from jobs.planning import submit_plan
from jobs.queue import JobStatus
from jobs.services import Services
from jobs.user_settings import save_preferences
from tests.app_support import open_app
from tests.conftest import running_worker, services_with
from tests.openai_fake_server import (
    FakeOpenAIServer,
    Reply,
    fake_openai_server,
    server_error,
)


@pytest.fixture
def openai_env(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Services, FakeOpenAIServer]]:
    with fake_openai_server() as server:
        monkeypatch.setenv("CHATEDIT_OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("CHATEDIT_OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("CHATEDIT_OPENAI_MODEL", "fake-model")
        monkeypatch.setenv("CHATEDIT_OPENAI_MAX_RETRIES", "0")
        save_preferences(app_env, {"planner": "openai"})
        yield app_env, server


def _history(services: Services) -> int:
    return start_history(services, store_upload(services, sample_png("Portrait")).id, title="Portrait").history_id


def _picks(at: AppTest) -> list[str]:
    return [c.label for c in at.checkbox if c.key.startswith("pick_") and not c.disabled]


def test_the_openai_planner_streams_its_reply_and_its_commands_reach_the_board(
        openai_env: tuple[Services, FakeOpenAIServer]) -> None:
    services, server = openai_env
    server.script.append(Reply(content=json.dumps({
        "reply": "I will brighten the photo a little.",
        "commands": [{"command": "adjust", "paras": ["brightness", 0.2, []]}]}), chunk_chars=5))
    history_id = _history(services)
    at = open_app(history=str(history_id))
    assert any("Planner: **openai**" in c.value for c in at.caption)
    at.chat_input(key="chat_prompt").set_value("brighten it a bit").run()
    assert not at.exception, at.exception
    assert server.requests and server.requests[-1].body.get("stream") is True
    assert server.requests[-1].messages[-1]["content"].endswith("brighten it a bit")
    replies = [m for m in messages(services, history_id) if m.role == "assistant"]
    assert replies[-1].content == "I will brighten the photo a little."
    assert _picks(at) == ["**Brighten the whole image (+0.2)**"]


def test_the_persons_planner_model_is_the_model_the_chat_asks(openai_env: tuple[Services, FakeOpenAIServer]) -> None:
    services, server = openai_env
    save_preferences(services, {"planner": "openai", "planner_model": "my-own-model"})
    server.script.append(Reply(content=json.dumps({"reply": "Warmer.", "commands": []})))
    at = open_app(history=str(_history(services)))
    at.chat_input(key="chat_prompt").set_value("make it warmer").run()
    assert not at.exception, at.exception
    assert [r.body["model"] for r in server.requests] == ["my-own-model"]
    assert any("Planner: **openai** · model `my-own-model`" in c.value for c in at.caption)


def test_an_unreachable_or_failing_server_is_a_sentence_in_the_chat(
        openai_env: tuple[Services, FakeOpenAIServer]) -> None:
    services, server = openai_env
    server.script.extend([server_error(503)] * 4)
    history_id = _history(services)
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("make it warmer").run()
    assert not at.exception, at.exception
    last = messages(services, history_id)[-1]
    assert last.role == "assistant" and last.content.startswith("I cannot plan this:") and not last.commands
    assert "Traceback" not in last.content and _picks(at) == []


def test_advise_puts_suggestions_on_the_board_as_advice_that_never_runs(
        openai_env: tuple[Services, FakeOpenAIServer], monkeypatch: pytest.MonkeyPatch) -> None:
    services, server = openai_env
    history_id = _history(services)
    assert not any(b.key == "advise" for b in open_app(history=str(history_id)).button)  # no vision model, no button
    monkeypatch.setenv("CHATEDIT_VISION_MODEL", "fake-vision")
    server.script.append(Reply(content=json.dumps({
        "reply": "Two ideas for this portrait.",
        "advice": ["The face is a little dark; brighten it."],
        "commands": [{"command": "adjust", "paras": ["brightness", 0.2, []]}]})))
    at = open_app(history=str(history_id))
    at.button(key="advise").click().run()
    assert not at.exception, at.exception
    sent = server.requests[-1]
    assert sent.body["model"] == "fake-vision"
    assert any(part.get("type") == "image_url" for part in sent.messages[-1]["content"])
    assert any("**Advice:** The face is a little dark; brighten it." in m.value for m in at.markdown)
    assert _picks(at) == ["**Brighten the whole image (+0.2)**"]  # the advice itself is not pickable
    at.button(key="run_all").click().run()
    payload = services.queue.get(at.session_state["job_id"]).payload
    assert [c["command"] for c in payload["commands"]] == ["adjust"]


def test_the_local_planner_runs_as_a_plan_job_with_progress_and_its_failure_is_a_sentence(
        app_env: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    services = app_env
    save_preferences(services, {"planner": "local"})
    history_id = _history(services)
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("make it brighter").run()
    last = messages(services, history_id)[-1]
    assert "CHATEDIT_LOCAL_LLM" in last.content and services.queue.list(kind="plan") == []

    monkeypatch.setenv("CHATEDIT_LOCAL_LLM", str(tmp_path / "no-model-here"))
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("make it warmer").run()
    (job,) = services.queue.list(kind="plan")
    assert job.payload["planner"] == "local" and job.payload["request"] == "make it warmer"
    assert "no worker serving the 'interactive' lane is alive" in at.get("progress")[0].proto.text
    assert at.chat_input(key="chat_prompt").disabled
    with services_with(settings, local_llm=str(tmp_path / "no-model-here")) as worker_services, \
            running_worker(worker_services, lanes=["interactive"]):
        assert services.queue.wait(job.id, timeout_s=120).status is JobStatus.FAILED
    at.run()
    assert not at.exception, at.exception
    last = messages(services, history_id)[-1]
    assert last.role == "assistant" and last.content.startswith("I cannot plan this:") and "local" in last.content
    assert not at.get("progress") and not at.chat_input(key="chat_prompt").disabled


def test_a_plan_job_can_be_cancelled(app_env: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    services = app_env
    save_preferences(services, {"planner": "local"})
    monkeypatch.setenv("CHATEDIT_LOCAL_LLM", str(tmp_path / "model"))
    history_id = _history(services)
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("make it warmer").run()
    (job,) = services.queue.list(kind="plan")
    at.button(key=f"cancel_{job.id}").click().run()
    assert services.queue.get(job.id).status is JobStatus.CANCELLED
    at.run()
    assert messages(services, history_id)[-1].content == "I cannot plan this: planning was cancelled."


def test_a_plan_job_survives_a_reload(app_env: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    services = app_env
    save_preferences(services, {"planner": "local"})
    monkeypatch.setenv("CHATEDIT_LOCAL_LLM", str(tmp_path / "model"))
    history_id = _history(services)
    open_app(history=str(history_id)).chat_input(key="chat_prompt").set_value("make it warmer").run()
    (job,) = services.queue.list(kind="plan")
    assert pending_plan_job(services, history_id) == job.id
    reloaded = open_app(history=str(history_id))  # a new session: nothing in session_state
    assert "Planning is queued, but no worker" in reloaded.get("progress")[0].proto.text
    assert reloaded.chat_input(key="chat_prompt").disabled
    reloaded.button(key=f"cancel_{job.id}").click().run()
    reloaded.run()
    assert [(m.role, m.content) for m in messages(services, history_id)] == [
        ("user", "make it warmer"), ("assistant", "I cannot plan this: planning was cancelled.")]
    assert not reloaded.get("progress") and not reloaded.chat_input(key="chat_prompt").disabled


def test_a_plan_jobs_reply_lands_exactly_once_whoever_watches_it(app_env: Services) -> None:
    services = app_env
    history_id = _history(services)
    add_message(services, history_id, "user", "make the shirt white")
    job_id = submit_plan(services, "make the shirt white", labels=["Upper-clothes"], planner="rules")
    add_pending_plan(services, history_id, job_id)  # what the chat does for a planner that runs on a worker
    first, second = open_app(history=str(history_id)), open_app(history=str(history_id))  # two tabs on the same history
    for page in (first, second):
        assert "Planning is queued, but no worker" in page.get("progress")[0].proto.text
    assert [m.role for m in messages(services, history_id)] == ["user"]  # the marker is not a chat message

    with running_worker(services, lanes=["interactive"]):
        assert services.queue.wait(job_id, timeout_s=60).status is JobStatus.SUCCEEDED
    first.run()
    second.run()
    first.run()
    assert not first.exception and not second.exception
    conversation = messages(services, history_id)
    assert [m.role for m in conversation] == ["user", "assistant"]
    assert conversation[1].commands and conversation[1].commands[0]["command"] == "recolor"
    assert pending_plan_job(services, history_id) is None
    for page in (first, second):
        assert not page.get("progress") and not page.chat_input(key="chat_prompt").disabled
        assert any("Recolor the Upper-clothes to white" in c.label for c in page.checkbox)  # on the board


def test_a_pending_marker_is_answered_once_and_a_gone_job_is_a_sentence(app_env: Services) -> None:
    services = app_env
    history_id = _history(services)
    add_pending_plan(services, history_id, 424242)
    assert resolve_pending_plan(services, history_id, 1, "not this one", []) is None
    at = open_app(history=str(history_id))  # job 424242 does not exist
    assert not at.exception, at.exception
    (reply,) = messages(services, history_id)
    assert reply.role == "assistant" and reply.content == "I cannot plan this: the planning job is gone; ask again."
    assert resolve_pending_plan(services, history_id, 424242, "again", []) is None
    assert pending_plan_job(services, history_id) is None


def test_board_items_keep_rejections_with_their_reasons() -> None:
    from core.commands import Rejection
    from core.planners import PlanResult

    result = PlanResult.from_dict({"reply": "ok", "commands": [{"command": "blur", "paras": [[], 3.0]}]})
    result.rejections.append(Rejection(1, "paint it", "This item is not a command object."))
    items = chat.board_items(result)
    assert items[0]["valid"] and items[1] == {"raw": "paint it", "valid": False,
                                              "reason": "This item is not a command object."}
