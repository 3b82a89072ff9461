"""Planning for the app: in-process for light planners, a `plan` job on a worker for model-loading ones."""

from __future__ import annotations

import pytest

from core.planners import ChatTurn, PlanResult, make_planner
from jobs.planning import PlanningFailed, plan_request, submit_plan
from jobs.queue import JobStatus
from jobs.services import Services
from tests.conftest import running_worker

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
