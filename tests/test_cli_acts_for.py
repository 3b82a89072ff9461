"""`chatedit --as NAME`: the command line acts for a person under the same checks as the app.

A refusal is one sentence on stderr and exit code 2, and nothing is queued or stored; an
allowed command's work belongs to the person named (the queue's owner, the history's owner).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image

from app.cli import cli
from db.models import LOCAL_USER_ID
from jobs.queue import JobStatus
from jobs.services import Services
from jobs.services import accounts as accounts_module
from tests.team_support import CHEAP, Team, make_team


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "PASSWORD_COSTS", CHEAP)


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


def _run(env: dict[str, str], *args: str, stdin: str = ""):
    result = CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def _refused(result, sentence: str) -> None:
    """Exit code 2, the sentence on stderr as its one line, nothing on stdout."""
    assert result.exit_code == 2, result.output
    assert sentence in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""


def _jobs(services: Services) -> list[tuple[str, int]]:
    return [(j.kind, j.owner_id) for j in services.queue.list(limit=100)]


def _photo(path: Path) -> Path:
    image = np.zeros((32, 40, 3), dtype=np.uint8)
    image[:] = (60, 90, 140)
    Image.fromarray(image).save(path)
    return path


def _count(services: Services, table: str) -> int:
    with services.database.read() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_viewer_cannot_submit_a_job_and_nothing_is_queued(services: Services, team: Team,
                                                            worker_env: dict[str, str]) -> None:
    result = _run(worker_env, "--as", "vic", "jobs", "submit", "noop", "--payload", '{"echo": "hi"}')
    _refused(result, "Vic (viewer) may not submit jobs.")
    assert _jobs(services) == []


def test_an_editor_queues_a_job_as_its_owner(services: Services, team: Team, worker_env: dict[str, str]) -> None:
    result = _run(worker_env, "--as", "ed", "jobs", "submit", "noop", "--payload", '{"echo": "hi"}')
    assert result.exit_code == 0, result.output
    job = services.queue.get(int(result.stdout.strip()))
    assert job.owner_id == team.editor.id
    assert f"owner {team.editor.id}" in _run(worker_env, "jobs", "show", str(job.id)).stdout


def test_the_person_can_be_named_by_the_environment_and_the_option_wins(services: Services, team: Team,
                                                                      worker_env: dict[str, str]) -> None:
    env = {**worker_env, "CHATEDIT_CLI_USER": "ed"}
    assert _run(env, "jobs", "submit", "noop").exit_code == 0
    _refused(_run({**worker_env, "CHATEDIT_CLI_USER": "vic"}, "jobs", "submit", "noop"),
             "Vic (viewer) may not submit jobs.")
    assert _run(env, "--as", "eve", "jobs", "submit", "noop").exit_code == 0
    assert sorted(_jobs(services)) == sorted([("noop", team.editor.id), ("noop", team.other_editor.id)])


def test_without_a_name_the_command_line_is_the_local_admin(services: Services, team: Team,
                                                           worker_env: dict[str, str]) -> None:
    assert _run(worker_env, "jobs", "submit", "noop").exit_code == 0
    assert _jobs(services) == [("noop", LOCAL_USER_ID)]


def test_an_unknown_name_is_refused_whatever_the_command(services: Services, team: Team,
                                                       worker_env: dict[str, str]) -> None:
    for args in (("jobs", "submit", "noop"), ("jobs", "list"), ("users", "list")):
        _refused(_run(worker_env, "--as", "nobody", *args), "There is no user named 'nobody' to act for")
    assert _jobs(services) == []


def test_a_disabled_account_is_refused(services: Services, team: Team, worker_env: dict[str, str]) -> None:
    team.accounts.disable(team.admin, "ed")
    _refused(_run(worker_env, "--as", "ed", "jobs", "submit", "noop"), "The account ed is disabled")
    assert _jobs(services) == []
    team.accounts.enable(team.admin, "ed")
    assert _run(worker_env, "--as", "ed", "jobs", "submit", "noop").exit_code == 0


def test_only_an_admin_manages_accounts_from_the_command_line(services: Services, team: Team,
                                                              worker_env: dict[str, str]) -> None:
    _refused(_run(worker_env, "--as", "vic", "users", "list"), "Vic (viewer) may not manage accounts.")
    _refused(_run(worker_env, "--as", "ed", "users", "create", "mallory", "--role", "admin"),
             "Ed (editor) may not manage accounts.")
    assert "mallory" not in _run(worker_env, "users", "list").stdout

    created = _run(worker_env, "--as", "ada", "users", "create", "bea", "--role", "reviewer")
    assert created.exit_code == 0 and created.stdout == "Created bea (reviewer) without a password.\n"
    with services.database.read() as conn:
        actor = conn.execute(sa.text("SELECT actor_id FROM audit_log WHERE action = 'user.created' "
                                     "ORDER BY id DESC")).scalars().first()
    assert actor == team.admin.id, "the audit log names the admin the command acted for"


def test_a_person_sets_their_own_password_but_no_one_else_s(services: Services, team: Team,
                                                          worker_env: dict[str, str]) -> None:
    own = _run(worker_env, "--as", "ed", "users", "set-password", "ed", stdin="a new long secret\n")
    assert own.exit_code == 0, own.output
    assert team.accounts.verify_password("ed", "a new long secret").name == "ed"
    _refused(_run(worker_env, "--as", "ed", "users", "set-password", "eve", stdin="a new long secret\n"),
             "Ed (editor) may not manage accounts.")


def test_cancel_and_retry_are_for_the_job_s_owner_or_an_admin(services: Services, team: Team,
                                                            worker_env: dict[str, str]) -> None:
    job_id = services.queue.enqueue("noop", {}, owner_id=team.editor.id)
    _refused(_run(worker_env, "--as", "eve", "jobs", "cancel", str(job_id)),
             f"Eve (editor) may not cancel job {job_id}: it is Ed's, and only its owner or an admin may.")
    assert services.queue.get(job_id).status is JobStatus.QUEUED
    assert _run(worker_env, "--as", "ed", "jobs", "cancel", str(job_id)).stdout == f"Job {job_id} cancelled.\n"

    _refused(_run(worker_env, "--as", "rita", "jobs", "retry", str(job_id)), f"may not retry job {job_id}: it is Ed's")
    retried = _run(worker_env, "--as", "ada", "jobs", "retry", str(job_id))
    assert retried.exit_code == 0, retried.output
    new_id = int(retried.stdout.split()[-1].rstrip("."))
    assert services.queue.get(new_id).owner_id == team.editor.id, "a retried job stays its owner's"


def test_a_person_lists_and_sees_their_own_jobs_and_an_admin_everyone_s(services: Services, team: Team,
                                                                       worker_env: dict[str, str]) -> None:
    eds = services.queue.enqueue("noop", {"echo": "ed's secret"}, owner_id=team.editor.id)
    eves = services.queue.enqueue("noop", {"echo": "eve's"}, owner_id=team.other_editor.id)
    listed = _run(worker_env, "--as", "ed", "jobs", "list", "--json")
    assert [j["id"] for j in json.loads(listed.stdout)] == [eds]
    assert sorted(j["id"] for j in json.loads(_run(worker_env, "--as", "ada", "jobs", "list", "--json").stdout)) \
        == [eds, eves]
    assert "ed's secret" in _run(worker_env, "--as", "ed", "jobs", "show", str(eds)).stdout
    _refused(_run(worker_env, "--as", "eve", "jobs", "show", str(eds)),
             f"Eve (editor) may not see job {eds}: it is Ed's, and only its owner or an admin may.")
    assert "ed's secret" in _run(worker_env, "--as", "ada", "jobs", "show", str(eds)).stdout


def test_a_viewer_cannot_edit_and_nothing_is_stored(services: Services, team: Team, worker_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    source = _photo(tmp_path / "in.png")
    commands = json.dumps([{"command": "adjust", "paras": ["brightness", 0.3, []]}])
    result = _run(worker_env, "--as", "vic", "edit", str(source), "--commands", commands, "-o", str(tmp_path / "o.png"))
    _refused(result, "Vic (viewer) may not submit jobs.")
    assert (_count(services, "images"), _count(services, "histories"), _jobs(services)) == (0, 0, [])
    assert not (tmp_path / "o.png").exists()


def test_an_editor_s_edit_makes_their_own_private_history(services: Services, team: Team,
                                                          worker_env: dict[str, str], tmp_path: Path) -> None:
    source = _photo(tmp_path / "in.png")
    commands = json.dumps([{"command": "adjust", "paras": ["brightness", 0.3, []]}])
    result = _run(worker_env, "--as", "ed", "edit", str(source), "--commands", commands, "-o", str(tmp_path / "o.png"))
    assert result.exit_code == 0, result.output
    with services.database.read() as conn:
        histories = conn.execute(sa.text("SELECT owner_id, visibility FROM histories")).all()
        steps = conn.execute(sa.text("SELECT created_by FROM steps ORDER BY id")).scalars().all()
        images = conn.execute(sa.text("SELECT DISTINCT created_by FROM images")).scalars().all()
    assert [tuple(h) for h in histories] == [(team.editor.id, "private")]
    assert steps == [team.editor.id, team.editor.id], "the root step and the edit's step are Ed's"
    assert images == [team.editor.id]
    assert _jobs(services) == [("edit", team.editor.id)]


def test_a_reviewer_cannot_plan_with_a_named_account(services: Services, team: Team,
                                                    worker_env: dict[str, str]) -> None:
    _refused(_run(worker_env, "--as", "rita", "plan", "--planner", "rules", "--labels", "Background",
                  "blur the background"), "Rita (reviewer) may not submit jobs.")
    allowed = _run(worker_env, "--as", "ed", "plan", "--planner", "rules", "--labels", "Background",
                   "blur the background")
    assert allowed.exit_code == 0 and json.loads(allowed.stdout)[0]["command"] == "blur"
