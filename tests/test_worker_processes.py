"""Real `chatedit worker` processes against SQLite and PostgreSQL: races, crashes, shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from jobs.queue import JobSpec, JobStatus
from jobs.services import Services

pytestmark = pytest.mark.slow


def _start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--lanes", "interactive", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@contextmanager
def _workers(env: dict[str, str], count: int) -> Iterator[list[subprocess.Popen[str]]]:
    procs = [_start_worker(env, "--name", f"w{i}") for i in range(count)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _executions(worker_logs: list[str]) -> Counter[int]:
    """How often each job really ran to the end, from the one line a worker logs per job it ran."""
    runs = re.compile(r" job (\d+) noop \[\w+\] .* -> succeeded ")
    return Counter(int(m.group(1)) for log in worker_logs for m in runs.finditer(log))


def test_four_workers_race_over_400_jobs_and_each_runs_exactly_once(
    services: Services, worker_env: dict[str, str]
) -> None:
    queue = services.queue
    with _workers(worker_env, 4) as procs:
        _wait_for(lambda: len(queue.workers(alive_within_s=30)) == 4, 60, "4 workers to register")
        ids: list[int] = []
        for start in range(0, 400, 50):  # arrive in bursts while the workers are already hungry
            # A few milliseconds of work each, so that no single worker's batches can swallow a whole burst.
            ids += queue.enqueue_many([JobSpec("noop", {"echo": i, "sleep_s": 0.01}) for i in range(start, start + 50)])
        _wait_for(lambda: queue.counts().get(("interactive", "succeeded"), 0) == 400, 180, "400 jobs to succeed")
        for p in procs:
            p.send_signal(signal.SIGTERM)
        logs = [p.communicate(timeout=30)[0] for p in procs]
        codes = [p.returncode for p in procs]
    assert codes == [0, 0, 0, 0]
    jobs = [queue.get(i) for i in ids]
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs)
    assert all(j.attempts == 1 for j in jobs)
    runs = _executions(logs)
    assert sorted(runs) == sorted(ids) and set(runs.values()) == {1}, "each job ran exactly once"
    assert sorted(j.result["echo"] for j in jobs) == list(range(400)), "none lost"
    assert len({j.result["worker"] for j in jobs}) >= 2, "the workers really competed"
    assert all(w.stopped_at is not None for w in queue.workers())


def test_a_killed_workers_job_is_finished_by_another(services: Services, worker_env: dict[str, str]) -> None:
    queue = services.queue
    job_id = queue.enqueue("noop", {"sleep_s": 60, "sleep_attempts": 1})
    first = _start_worker(worker_env, "--name", "doomed")

    def started_by_the_first() -> bool:
        job = queue.get(job_id)
        return job.lease_owner == "doomed" and (job.progress_message or "").startswith("working")

    try:
        _wait_for(started_by_the_first, 60, "the first worker to start the job")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert queue.get(job_id).status is JobStatus.RUNNING, "nobody has noticed yet"
    with _workers(worker_env, 1):
        job = queue.wait(job_id, timeout_s=60)
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempts == 2 and job.result["worker"] == "w0", "it ran again, at-least-once, on the survivor"


def test_sigterm_lets_a_short_job_finish(services: Services, worker_env: dict[str, str]) -> None:
    queue = services.queue
    job_id = queue.enqueue("noop", {"sleep_s": 1.0})
    proc = _start_worker({**worker_env, "CHATEDIT_WORKER_SHUTDOWN_GRACE_SECONDS": "20"})
    _wait_for(lambda: queue.get(job_id).status is JobStatus.RUNNING, 60, "the job to start")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert queue.get(job_id).status is JobStatus.SUCCEEDED
    assert "claiming no more" in out


def test_sigterm_hands_a_long_job_back_after_the_grace_period(services: Services, worker_env: dict[str, str]) -> None:
    queue = services.queue
    job_id = queue.enqueue("noop", {"sleep_s": 120})
    proc = _start_worker({**worker_env, "CHATEDIT_WORKER_SHUTDOWN_GRACE_SECONDS": "0.5"})
    _wait_for(lambda: queue.get(job_id).status is JobStatus.RUNNING, 60, "the job to start")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert time.monotonic() - started < 15
    job = queue.get(job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None)
    assert "handed back" in out


def test_the_worker_logs_one_line_per_job_with_timings(services: Services, worker_env: dict[str, str]) -> None:
    queue = services.queue
    ok = queue.enqueue("noop")
    bad = queue.enqueue("noop", {"fail": "permanent"})
    proc = _start_worker(worker_env)
    _wait_for(lambda: queue.get(bad).terminal and queue.get(ok).terminal, 60, "both jobs to finish")
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    lines = [line for line in out.splitlines() if " job " in line and "attempt" in line]
    assert len(lines) == 2, out
    assert f"job {ok} noop [interactive]" in lines[0] and "succeeded (ran" in lines[0] and "waited" in lines[0]
    assert f"job {bad} noop" in lines[1] and "failed (PermanentError" in lines[1]
