"""A job payload is data, never a file name: whoever may submit a job cannot read, write, block or exhaust files.

Each kind's payload model (``jobs.registry``) refuses unknown keys and out-of-range
values before the job is queued, and again in the handler, for rows written some other way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from core.settings import Settings
from jobs.queue import JobStatus, jobs_t
from jobs.registry import InvalidPayload, check_payload
from jobs.services import Services
from tests.conftest import running_worker, services_with


def _force_payload(services: Services, job_id: int, payload: dict) -> None:
    """Write a payload straight into the row, as an older version or another program might have."""
    with services.database.write() as conn:
        conn.execute(sa.update(jobs_t).where(jobs_t.c.id == job_id).values(payload=payload))


def _dataset(path: Path) -> Path:
    labels = "分割得到的标签有:\n1. Background\n2. Upper-clothes"
    rows = [{"instruction": "把上衣换成白色", "input": "",
             "output": '[{"command": "recolor", "paras": [["Upper-clothes"], "white"]}]',
             "history": [["我更改了图片，新的图片有哪些部分？", labels]]}]
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- refused before the queue


@pytest.mark.parametrize(("kind", "payload", "problem"), [
    ("noop", {"output": "written into the blob store"}, "unknown key 'output'"),
    ("noop", {"mark": True}, "unknown key 'mark'"),
    ("noop", {"sleep_s": 1e9}, "sleep_s: input should be less than or equal to 600"),
    ("noop", {"sleep_s": "5"}, "sleep_s: input should be a valid number"),
    ("noop", {"fail": "sometimes"}, "fail: input should be 'retryable' or 'permanent'"),
    ("eval_planner", {"dataset": "/etc/passwd"}, "dataset: string should match pattern"),
    ("eval_planner", {"dataset": "/dev/zero"}, "dataset: string should match pattern"),
    ("eval_planner", {"dataset": "../../shared/data/seed_chat_dataset.json"}, "dataset: string should match pattern"),
    ("eval_planner", {}, "dataset is missing"),
    ("eval_planner", {"dataset": "seed", "planner": "shell"}, "planner: input should be"),
    ("eval_planner", {"dataset": "seed", "limit": 0}, "limit: input should be greater than or equal to 1"),
    ("plan", {"request": "x", "planner": "evil"}, "planner: input should be 'rules', 'openai' or 'local'"),
    ("plan", {"request": "x", "conversation": [{"role": "user", "content": "y", "tool": "z"}]},
     "unknown key 'conversation.0.tool'"),
    ("generate", {"prompt": "x", "user_id": 2}, "unknown key 'user_id'"),
    ("generate", {"prompt": "x", "user_settings": {"steps": "30"}}, "user_settings: steps must be a number"),
    ("swap_face", {"source_image_id": 1, "target_image_id": 2, "user_id": 2}, "unknown key 'user_id'"),
    ("swap_face", {"source_image_id": 1}, "target_image_id is missing"),
])
def test_a_payload_its_kind_does_not_declare_is_refused_with_a_sentence(kind: str, payload: dict,
                                                                        problem: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        check_payload(kind, payload)
    message = str(info.value)
    assert message.startswith(f"The {kind} job's payload is not valid: ") and message.endswith(".")
    assert problem in message


def test_the_queue_refuses_a_bad_payload_and_stores_nothing(services: Services) -> None:
    with pytest.raises(InvalidPayload, match="unknown key 'output'"):
        services.queue.enqueue("noop", {"output": "x"})
    with pytest.raises(InvalidPayload, match="dataset"):
        services.queue.enqueue("eval_planner", {"dataset": "/proc/self/environ"}, lane="batch")
    assert services.queue.list() == []


def test_a_valid_payload_is_queued_as_given(services: Services) -> None:
    job_id = services.queue.enqueue("noop", {"sleep_s": 0, "echo": {"nested": [1, "two"]}})
    assert services.queue.get(job_id).payload == {"sleep_s": 0, "echo": {"nested": [1, "two"]}}


# ---------------------------------------------------------------------------- refused again in the handler


def test_a_row_with_a_forbidden_payload_fails_at_once_without_touching_a_file(services: Services,
                                                                              tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('[{"instruction": "the secret"}]')
    noop = services.queue.enqueue("noop")
    _force_payload(services, noop, {"output": "x" * 1000})
    evaluation = services.queue.enqueue("eval_planner", {"dataset": "seed"}, lane="batch")
    _force_payload(services, evaluation, {"dataset": str(secret), "planner": "reference"})
    with running_worker(services, lanes=["interactive", "batch"]):
        noop_job = services.queue.wait(noop, timeout_s=30)
        eval_job = services.queue.wait(evaluation, timeout_s=30)
    assert (noop_job.status, noop_job.attempts) == (JobStatus.FAILED, 1)
    assert "unknown key 'output'" in noop_job.error_message
    assert services.queue.outputs(noop) == [], "noop wrote nothing"
    assert (eval_job.status, eval_job.attempts) == (JobStatus.FAILED, 1)
    assert "dataset: string should match pattern" in eval_job.error_message
    assert "the secret" not in json.dumps(eval_job.result or {})


def test_noop_writes_no_output(services: Services) -> None:
    job_id = services.queue.enqueue("noop", {"echo": "hi"})
    with running_worker(services, lanes=["interactive"]):
        job = services.queue.wait(job_id, timeout_s=30)
    assert job.status is JobStatus.SUCCEEDED and job.result["echo"] == "hi"
    assert services.queue.outputs(job_id) == []


# ---------------------------------------------------------------------------- datasets by name


def test_an_evaluation_names_a_dataset_the_worker_resolves(settings: Settings, services: Services,
                                                            tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "team.json")
    job_id = services.queue.enqueue("eval_planner", {"dataset": "team", "planner": "reference"}, lane="batch")
    unknown = services.queue.enqueue("eval_planner", {"dataset": "nobody"}, lane="batch")
    with services_with(settings, eval_datasets={"team": dataset}) as worker_services, \
            running_worker(worker_services, lanes=["batch"]):
        job = services.queue.wait(job_id, timeout_s=60)
        missing = services.queue.wait(unknown, timeout_s=60)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    assert (job.result["samples"], job.result["dataset"]) == (1, "team")
    assert missing.status is JobStatus.FAILED and missing.attempts == 1
    assert missing.error_message.startswith("There is no dataset named 'nobody'; registered: ")
    assert "team" in missing.error_message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_registered_dataset_that_is_a_fifo_fails_instead_of_holding_a_slot(settings: Settings, services: Services,
                                                                             tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    job_id = services.queue.enqueue("eval_planner", {"dataset": "pipe"}, lane="batch")
    with services_with(settings, eval_datasets={"pipe": fifo}) as worker_services, \
            running_worker(worker_services, lanes=["batch"]):
        job = services.queue.wait(job_id, timeout_s=60)
    assert job.status is JobStatus.FAILED
    assert "is not a regular file" in job.error_message


# ---------------------------------------------------------------------------- the command line


def _submit(env: dict[str, str], *args: str):
    result = CliRunner().invoke(cli, ["jobs", "submit", *args], env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(("args", "problem"), [
    (["noop", "--payload", '{"output": "x"}'], "unknown key 'output'"),
    (["eval_planner", "--payload", '{"dataset": "/dev/zero"}'], "dataset: string should match pattern"),
    (["noop", "--payload", '{"echo": "a\\u0000b"}'], "contains a NUL character"),
    (["noop", "--payload", '{"echo": "\\ud800"}'], "lone surrogate"),
    (["noop", "--payload", '{"echo": NaN}'], "not a JSON number"),
    (["noop", "--payload", "[" * 100_000 + "]" * 100_000], "--payload"),
    (["noop", "--priority", str(2**40)], "--priority"),
    (["no-such-kind"], "there is no job kind 'no-such-kind'"),
])
def test_jobs_submit_refuses_a_hostile_payload_with_a_sentence(services: Services, worker_env: dict[str, str],
                                                               args: list[str], problem: str) -> None:
    result = _submit(worker_env, *args)
    assert result.exit_code == 2, result.output
    assert problem in result.stderr
    assert services.queue.list() == []


def test_eval_planner_on_a_registered_name_runs_as_a_job(services: Services, worker_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "mine.json")
    env = {**worker_env, "CHATEDIT_EVAL_DATASETS": json.dumps({"mine": str(dataset)})}
    result = CliRunner().invoke(cli, ["eval", "planner", "--planner", "reference", "--dataset", "mine", "--json"],
                                env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dataset"] == "mine"
    (job,) = services.queue.list(kind="eval_planner")
    assert job.payload == {"planner": "reference", "dataset": "mine"}, "the job names the dataset, not its file"
    unknown = CliRunner().invoke(cli, ["eval", "planner", "--dataset", "/no/such/file.json"], env=env)
    assert unknown.exit_code == 2 and "a registered dataset (mine, seed), nor a file" in unknown.stderr
