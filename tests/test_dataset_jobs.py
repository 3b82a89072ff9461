"""The dataset studio's batch jobs on a real worker: import, generate, harvest, cancel (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jobs.conversations import add_message
from jobs.histories import record_step, start_history
from jobs.images import store_array
from jobs.queue import JobStatus
from jobs.services import Services, datasets, reviews
from jobs.services.permissions import PermissionDenied
from tests.conftest import running_worker
from tests.team_support import Team, make_team

SEED = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_chat_dataset.json"


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


def _run(services: Services, job_id: int):  # type: ignore[no-untyped-def]
    with running_worker(services, lanes=["batch"]):
        return services.queue.wait(job_id, timeout_s=300)


def test_importing_the_seed_file_makes_a_version_and_lists_what_was_left_out(services: Services, team: Team) -> None:
    job_id = datasets.submit_import(services, team.admin, SEED.read_bytes(), file_name=SEED.name, fmt="seed")
    job = _run(services, job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    version = datasets.get_version(services, team.admin, "seed_chat_dataset")
    assert version.number == job.result["version"] == 1
    assert version.row_count == job.result["rows"] and version.row_count + job.result["rejected_count"] == 2916
    assert job.result["rejected"] and all(r["reason"] for r in job.result["rejected"])
    rows = datasets.usable_rows(services, team.admin, "seed_chat_dataset")
    assert rows[0].origin == "seed_chat_dataset.json#0" and rows[0].language == "zh"
    # Importing into the same name again adds a version holding both.
    again = _run(services, datasets.submit_import(services, team.admin, SEED.read_bytes(), file_name=SEED.name,
                                                  fmt="seed"))
    assert again.result["version"] == 2
    assert datasets.get_version(services, team.admin, "seed_chat_dataset").row_count == 2 * version.row_count


def test_a_file_in_the_wrong_format_fails_with_a_sentence(services: Services, team: Team) -> None:
    job = _run(services, datasets.submit_import(services, team.admin, b'{"not": "a list"}', file_name="x.json",
                                                fmt="alpaca"))
    assert job.status is JobStatus.FAILED and job.error_message and "x.json" not in (job.error_type or "")
    with pytest.raises(datasets.DatasetNotFound):
        datasets.get_version(services, team.admin, "x")


def test_generating_template_rows_makes_a_checked_version(services: Services, team: Team) -> None:
    job = _run(services, datasets.submit_generate(services, team.admin, "templates", templates=300, seed=3))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    rows = datasets.usable_rows(services, team.admin, "templates")
    assert len(rows) == 300 and {r.language for r in rows} == {"en", "zh"}
    assert all(r.source == "template" and r.passed for r in rows)


def test_approved_steps_are_harvested_once(services: Services, team: Team) -> None:
    image = store_array(services, np.full((16, 16, 3), 100, np.uint8), user_id=team.editor.id)
    started = start_history(services, image.id, owner_id=team.editor.id, visibility="team")
    add_message(services, started.history_id, "user", "make the shirt red", author_id=team.editor.id)
    commands = [{"command": "recolor", "paras": [["Upper-clothes"], "red"]}]
    step = record_step(services, history_id=started.history_id, parent_id=started.root_step_id, image_id=image.id,
                       commands=commands, params={"labels": ["Background", "Upper-clothes"]}, job_id=None,
                       user_id=team.editor.id)
    reviews.decide(services, team.reviewer, step, "approve")
    job = _run(services, datasets.submit_harvest(services, team.admin, "approved"))
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    [row] = datasets.usable_rows(services, team.admin, "approved")
    assert (row.request, row.labels, row.source, row.origin) == ("make the shirt red",
                                                                  ("Background", "Upper-clothes"), "review",
                                                                  f"step:{step}")
    assert json.loads(json.dumps(list(row.commands))) == commands
    again = _run(services, datasets.submit_harvest(services, team.admin, "approved"))
    assert again.status is JobStatus.FAILED and "nothing new to harvest" in (again.error_message or "")


def test_an_editor_cannot_queue_dataset_jobs(services: Services, team: Team) -> None:
    with pytest.raises(PermissionDenied):
        datasets.submit_generate(services, team.editor, "mine", templates=5)
    with pytest.raises(PermissionDenied):  # nor by the queue directly, with a payload of their own
        services.queue.enqueue("dataset_harvest", {"name": "mine"}, lane="batch", owner_id=team.editor.id)
