"""Evaluation runs as batch jobs on a real worker: stored, reloaded identically, cancelled (both databases)."""

from __future__ import annotations

import pytest

from finetune.dataset_rows import DatasetRow
from finetune.metrics import EvalMetrics, aggregate, score_row
from jobs.queue import JobStatus
from jobs.services import Services, datasets, evaluations
from jobs.services.permissions import PermissionDenied
from tests.conftest import running_worker
from tests.team_support import Team, make_team

LABELS = ("Background", "Hair", "Upper-clothes", "Face")


def _rows() -> list[DatasetRow]:
    made = [("make the shirt red", [{"command": "recolor", "paras": [["Upper-clothes"], "red"]}], "en"),
            ("blur the background", [{"command": "blur", "paras": [["Background"], 0.5]}], "en"),
            ("把头发染成蓝色", [{"command": "recolor", "paras": [["Hair"], "blue"]}], "zh"),
            ("make it brighter", [{"command": "adjust", "paras": ["brightness", 0.3, []]}], "en")]
    return [DatasetRow(request=r, language=lang, labels=LABELS, commands=tuple(c), source="template",
                       checks={"contract": True}, split="test") for r, c, lang in made]


@pytest.fixture
def team(services: Services) -> Team:
    t = make_team(services)
    datasets.create_version(services, t.admin, "tiny", _rows(), note="by hand", split_seed=0)
    return t


def _finish(services: Services, job_id: int):  # type: ignore[no-untyped-def]
    with running_worker(services, lanes=["batch"]):
        return services.queue.wait(job_id, timeout_s=300)


def test_a_run_of_the_reference_outputs_is_perfect_and_reloads_identically(services: Services, team: Team) -> None:
    job = _finish(services, evaluations.submit_run(services, team.admin, planner="reference", dataset="tiny"))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    run = evaluations.run_of_job(services, team.admin, job.id)
    assert run is not None and (run.status, run.example_count, run.dataset, run.split) == ("succeeded", 4,
                                                                                          "tiny@1", "test")
    metrics = EvalMetrics.from_dict(run.metrics)
    assert metrics["exact_match"] == 1.0 and metrics["validity"] == 1.0
    examples = evaluations.run_examples(services, team.admin, run.id)
    assert [e.request for e in examples] == [r.request for r in _rows()]
    # What is stored is what the metrics say: scoring again from the stored replies gives the same numbers.
    again = aggregate([score_row(r, e.reply, e.produced, latency_s=0.0)
                       for r, e in zip(_rows(), examples, strict=True)])
    assert again.to_dict() == run.metrics


def test_the_rule_planner_is_scored_with_every_metric(services: Services, team: Team) -> None:
    job = _finish(services, evaluations.submit_run(services, team.admin, planner="rules", dataset="tiny@1"))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    run = evaluations.get_run(services, team.admin, job.result["run_id"])
    assert run.metrics["scalars"]["parse_rate"] == 1.0
    assert run.label == f"#{run.id} rules on tiny@1/test"
    assert [r.id for r in evaluations.list_runs(services, team.admin)] == [run.id]


def test_a_split_that_does_not_exist_fails_with_a_sentence(services: Services, team: Team) -> None:
    job = _finish(services, evaluations.submit_run(services, team.admin, planner="rules", dataset="tiny", split="val"))
    assert job.status is JobStatus.FAILED and "has no val split" in (job.error_message or "")


def test_only_admins_run_evaluations(services: Services, team: Team) -> None:
    with pytest.raises(PermissionDenied):
        evaluations.submit_run(services, team.editor, planner="rules", dataset="tiny")
    with pytest.raises(PermissionDenied):
        services.queue.enqueue("eval_run", {"planner": "rules", "dataset": "tiny@1"}, lane="batch",
                               owner_id=team.editor.id)
    with pytest.raises(evaluations.EvaluationError):
        evaluations.submit_run(services, team.admin, planner="rules", dataset="tiny", constrained=True)


def test_a_run_through_an_openai_compatible_server_scores_its_answers(services: Services, team: Team,
                                                                      settings) -> None:  # type: ignore[no-untyped-def]
    """The worker asks the local OpenAI-compatible test server; its answers are scored, the misses named."""
    import json

    from tests.conftest import services_with
    from tests.openai_fake_server import FakeOpenAIServer, Reply

    answers = {  # right, right, a wrong target, and an answer with no commands in it
        "make the shirt red": [{"command": "recolor", "paras": [["Upper-clothes"], "red"]}],
        "blur the background": [{"command": "blur", "paras": [["Background"], 0.5]}],
        "把头发染成蓝色": [{"command": "recolor", "paras": [["Upper-clothes"], "blue"]}],
    }

    def respond(received):  # type: ignore[no-untyped-def]
        request = received.body["messages"][-1]["content"]
        if request not in answers:
            return Reply(content="I would rather not say.")
        return Reply(content=json.dumps({"reply": "ok", "commands": answers[request]}, ensure_ascii=False))

    with FakeOpenAIServer() as server:
        server.responder = respond
        with services_with(settings, openai_base_url=server.base_url, openai_model="fake-model",
                           openai_api_key="sk-test", openai_max_retries=0) as configured:
            job = _finish(configured, evaluations.submit_run(configured, team.admin, planner="openai",
                                                             dataset="tiny"))
        assert job.status is JobStatus.SUCCEEDED, job.error_message
        assert len(server.requests) == 4
    run = evaluations.run_of_job(services, team.admin, job.id)
    assert run is not None and run.planner_detail == {"model": "fake-model"}
    scalars = run.metrics["scalars"]
    assert scalars["exact_match"] == 0.5
    primary = {e.request: e.score["primary_error"] for e in evaluations.run_examples(services, team.admin, run.id)}
    assert primary["make the shirt red"] is None and primary["把头发染成蓝色"] == "wrong_target"
    assert primary["make it brighter"] in ("unparsable", "missing_command")
