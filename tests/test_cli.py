"""The `chatedit` command line as a person uses it: help, init, jobs, serve; errors as sentences."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from core.settings import Settings
from jobs.queue import JobStatus
from jobs.services import Services


def _run(env: dict[str, str], *args: str):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def env(worker_env: dict[str, str]) -> dict[str, str]:
    return worker_env


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "worker", "serve", "jobs"):
        assert f"  {command} " in result.output
    jobs_help = CliRunner().invoke(cli, ["jobs", "--help"]).output
    for command in ("list", "show", "submit", "cancel", "retry"):
        assert f"  {command} " in jobs_help


def test_commands_before_init_say_to_run_init(settings: Settings, env: dict[str, str]) -> None:
    result = _run(env, "jobs", "list")
    assert result.exit_code == 1
    assert "run `chatedit init` first" in result.output


def test_init_then_submit_list_show_cancel_retry(settings: Settings, env: dict[str, str]) -> None:
    first = _run(env, "init")
    assert first.exit_code == 0 and "Created the ChatEdit schema" in first.output
    assert "Checked the ChatEdit schema" in _run(env, "init").output

    submitted = _run(env, "jobs", "submit", "noop", "--payload", '{"echo": "hi"}', "--lane", "gpu", "--priority", "2")
    assert submitted.exit_code == 0
    job_id = int(submitted.output.strip())

    listing = _run(env, "jobs", "list")
    assert f"{job_id:>6}  noop" in listing.output and "gpu: 1 queued" in listing.output

    shown = json.loads(_run(env, "jobs", "show", str(job_id), "--json").output)
    assert (shown["status"], shown["lane"], shown["priority"], shown["payload"]) == ("queued", "gpu", 2, {"echo": "hi"})

    assert f"Job {job_id} cancelled." in _run(env, "jobs", "cancel", str(job_id)).output
    assert "had already finished" in _run(env, "jobs", "cancel", str(job_id)).output
    retried = _run(env, "jobs", "retry", str(job_id))
    assert retried.exit_code == 0 and f"Job {job_id} queued again as job" in retried.output

    refused = _run(env, "jobs", "retry", str(job_id + 1))
    assert refused.exit_code == 1 and "only a failed or cancelled job can be retried" in refused.output
    missing = _run(env, "jobs", "show", "9999")
    assert missing.exit_code == 1 and "There is no job 9999." in missing.output


def test_bad_input_is_a_usage_error_not_a_traceback(settings: Settings, env: dict[str, str]) -> None:
    _run(env, "init")
    bad_json = _run(env, "jobs", "submit", "noop", "--payload", "{nope")
    assert bad_json.exit_code == 2 and "not JSON" in bad_json.output
    bad_lane = _run(env, "worker", "--lanes", "cpu")
    assert bad_lane.exit_code == 2 and "Unknown lane(s) cpu" in bad_lane.output


def test_an_unreachable_database_is_one_sentence(tmp_path: Path) -> None:
    env = {"CHATEDIT_DATA_DIR": str(tmp_path), "CHATEDIT_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    result = _run(env, "jobs", "list")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Cannot use the database 127.0.0.1:1/none")
    assert "CHATEDIT_DATABASE_URL" in result.output


def test_submit_wait_shows_the_result(services: Services, env: dict[str, str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = _run(env, "jobs", "submit", "noop", "--payload", '{"echo": 7, "sleep_s": 0.3}', "--wait",
                      "--timeout", "60")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["echo"] == 7


@pytest.mark.slow
def test_serve_migrates_runs_a_worker_per_lane_and_stops_on_ctrl_c(settings: Settings, env: dict[str, str]) -> None:
    with socket.socket() as sock:  # a free port, so the web app child never collides with another server
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    services = Services.from_settings(settings)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if len(services.queue.workers(alive_within_s=30)) == 3:
                    break
            except Exception:  # noqa: BLE001 - the schema may not exist yet
                pass
            time.sleep(0.2)
        workers = services.queue.workers(alive_within_s=30)
        assert sorted(lane for w in workers for lane in w.lanes) == ["batch", "gpu", "interactive"]
        jobs = [services.queue.enqueue("noop", {"echo": lane}, lane=lane) for lane in ("interactive", "gpu", "batch")]
        assert all(services.queue.wait(j, timeout_s=60).status is JobStatus.SUCCEEDED for j in jobs)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "Press Ctrl-C to stop" in out and "Stopped." in out
        assert all(w.stopped_at is not None for w in services.queue.workers())
    finally:
        if proc.poll() is None:
            proc.kill()
        services.close()
