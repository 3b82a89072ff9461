"""Planning for the app: in-process for light planners, a `plan` job on a worker for model-loading ones."""

from __future__ import annotations

import json

import pytest

from core.planners import ChatTurn, PlanResult, make_planner
from jobs.planning import PlanningFailed, plan_request, submit_plan
from jobs.queue import JobStatus
from jobs.services import Services
from tests.conftest import running_worker
from tests.openai_fake_server import Reply, fake_openai_server

LABELS = ["Background", "Upper-clothes", "Face"]


def test_the_rule_planner_answers_in_process(services: Services) -> None:
    result = plan_request(services, "make the shirt white", labels=LABELS)
    assert result.wire() == [{"command": "recolor", "paras": [["Upper-clothes"], "white"]}]
    assert services.queue.list() == []


def test_a_plan_job_returns_what_the_planner_would(services: Services) -> None:
    conversation = [ChatTurn("user", "hi"), ChatTurn("assistant", "hello")]
    job_id = submit_plan(services, "把背景虚化，去掉帽子", labels=LABELS, conversation=conversation, planner="rules")
    with running_worker(services, lanes=["interactive"]):
        job = services.queue.wait(job_id, timeout_s=30)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    assert job.lane == "interactive"
    from_job = PlanResult.from_dict(job.result)
    direct = make_planner("rules").plan("把背景虚化，去掉帽子", labels=LABELS)
    assert from_job == direct
    assert from_job.not_understood and "Hat" in from_job.not_understood[0].reason


def test_an_unknown_planner_is_a_sentence(services: Services) -> None:
    with pytest.raises(PlanningFailed, match="no planner called 'nope'"):
        plan_request(services, "make it brighter", labels=[], planner="nope")


def test_a_model_override_reaches_the_openai_planner_and_other_planners_ignore_it(services: Services) -> None:
    reply = json.dumps({"reply": "Brighter.", "commands": [{"command": "adjust", "paras": ["brightness", 0.2, []]}]})
    with fake_openai_server() as server:
        server.script.extend([Reply(content=reply), Reply(content=reply)])
        settings = services.settings.model_copy(update={
            "openai_base_url": server.base_url, "openai_api_key": "sk-test", "openai_model": "fake-model",
            "openai_max_retries": 0})
        with_server = Services.from_settings(settings)
        try:
            plan_request(with_server, "make it brighter", labels=LABELS, planner="openai")
            result = plan_request(with_server, "make it brighter", labels=LABELS, planner="openai",
                                  model="my-own-model")
        finally:
            with_server.close()
        assert [r.body["model"] for r in server.requests] == ["fake-model", "my-own-model"]
    assert result.wire() == [{"command": "adjust", "paras": ["brightness", 0.2, []]}]
    ruled = plan_request(services, "make the shirt white", labels=LABELS, planner="rules", model="my-own-model")
    assert ruled.wire() == [{"command": "recolor", "paras": [["Upper-clothes"], "white"]}]
