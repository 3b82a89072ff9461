"""A real worker on threads of the test process: wake-ups, concurrency, and how handler failures settle."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from core.settings import Settings
from jobs.context import JobContext
from jobs.queue import JobQueue, JobSpec, JobStatus
from jobs.registry import HandlerRegistry
from jobs.services import Services
from tests.conftest import running_worker


@pytest.fixture
def slow_poll_services(settings: Settings) -> Iterator[Services]:
    """Services whose workers would wait 60 s between polls: only a wake-up can start a job sooner."""
    from db.migrate import upgrade

    svc = Services.from_settings(settings.model_copy(update={"worker_poll_seconds": 60.0}))
    upgrade(svc.database)
    yield svc
    svc.close()


def test_an_idle_worker_is_woken_by_a_new_job_not_by_its_poll(slow_poll_services: Services) -> None:
    queue = slow_poll_services.queue
    with running_worker(slow_poll_services, lanes=["interactive"]):
        time.sleep(0.5)  # the slot is now asleep on its 60 s poll
        job = queue.wait(queue.enqueue("noop"), timeout_s=20)
    assert job.status is JobStatus.SUCCEEDED


def test_concurrency_runs_jobs_side_by_side(services: Services) -> None:
    queue = services.queue
    ids = [queue.enqueue("noop", {"sleep_s": 3}) for _ in range(3)]
    with running_worker(services, lanes=["interactive"], concurrency=3):
        deadline = time.monotonic() + 20
        peak = 0
        while time.monotonic() < deadline and not all(queue.get(i).terminal for i in ids):
            peak = max(peak, queue.counts().get(("interactive", "running"), 0))
            time.sleep(0.05)
    assert peak == 3
    assert all(queue.get(i).status is JobStatus.SUCCEEDED for i in ids)


def _buggy(ctx: JobContext) -> None:
    raise ValueError("a bug in the handler")


def _returns_a_list(ctx: JobContext) -> list[int]:
    return [1, 2, 3]


def test_handler_failures_settle_the_job(services: Services) -> None:
    queue = services.queue
    registry = HandlerRegistry()
    registry.register("buggy", _buggy)
    registry.register("listy", _returns_a_list)
    unknown = queue.enqueue("no-such-kind", max_attempts=3)
    buggy = queue.enqueue("buggy", max_attempts=3)
    listy = queue.enqueue("listy")
    with running_worker(services, lanes=["interactive"], registry=registry):
        jobs = {name: queue.wait(i, timeout_s=20) for name, i in (("unknown", unknown), ("buggy", buggy),
                                                                     ("listy", listy))}
    assert jobs["unknown"].status is JobStatus.FAILED and jobs["unknown"].attempts == 1
    assert "No handler for job kind 'no-such-kind'" in jobs["unknown"].error_message
    assert jobs["buggy"].status is JobStatus.FAILED and jobs["buggy"].attempts == 1, "a bug is not retried"
    assert jobs["buggy"].error_type == "ValueError" and "_buggy" in jobs["buggy"].error_traceback
    assert jobs["listy"].status is JobStatus.SUCCEEDED and jobs["listy"].result == {"value": [1, 2, 3]}


def test_a_retryable_failure_is_run_again_after_its_backoff(services: Services) -> None:
    queue = services.queue
    job_id = queue.enqueue("noop", {"fail": "retryable", "fail_attempts": 2, "echo": "third time lucky"})
    with running_worker(services, lanes=["interactive"]):
        job = queue.wait(job_id, timeout_s=30)
    assert (job.status, job.attempts, job.result["echo"]) == (JobStatus.SUCCEEDED, 3, "third time lucky")
    assert (job.error_type, job.error_message) == (None, None), "a success clears the failures before it"


def test_progress_is_visible_while_a_job_runs(services: Services) -> None:
    queue = services.queue
    job_id = queue.enqueue("noop", {"sleep_s": 2})
    seen: set[float] = set()
    with running_worker(services, lanes=["interactive"]):
        while not queue.get(job_id).terminal:
            job = queue.get(job_id)
            if job.status is JobStatus.RUNNING:
                seen.add(job.progress)
            time.sleep(0.05)
    assert len([p for p in seen if 0 < p < 1]) >= 3, seen
    assert queue.get(job_id).progress == 1.0


def _warm_up(queue: JobQueue, jobs: int = 40) -> None:
    """Let the worker learn that noop jobs are quick (it batches only jobs it has seen finish fast)."""
    ids = queue.enqueue_many([JobSpec("noop") for _ in range(jobs)])
    for job_id in ids:
        assert queue.wait(job_id, timeout_s=20).status is JobStatus.SUCCEEDED


def test_quick_jobs_are_claimed_in_batches_and_a_slow_one_holds_none_of_them_up(services: Services) -> None:
    queue = services.queue
    release_slow = threading.Event()
    registry = HandlerRegistry()
    registry.register("slow", lambda ctx: {"released": release_slow.wait(20)})
    with running_worker(services, lanes=["interactive"], concurrency=2, registry=registry):
        _warm_up(queue)
        quick = queue.enqueue_many([JobSpec("noop") for _ in range(64)])
        finished = [queue.wait(job_id, timeout_s=20) for job_id in quick]
        assert all(job.status is JobStatus.SUCCEEDED for job in finished)
        claims = {job.started_at for job in finished}
        assert len(claims) <= 16, f"64 quick jobs took {len(claims)} claims; they should come in batches"

        ids = queue.enqueue_many([JobSpec("noop")] * 5 + [JobSpec("slow")] + [JobSpec("noop")] * 5)
        before, slow, after = ids[:5], ids[5], ids[6:]
        try:
            for job_id in before + after:
                job = queue.wait(job_id, timeout_s=10)
                assert job.status is JobStatus.SUCCEEDED, "a quick job waited behind the slow one"
            assert queue.get(slow).status is JobStatus.RUNNING
        finally:
            release_slow.set()
        assert queue.wait(slow, timeout_s=20).result == {"released": True}


def test_a_stopping_worker_hands_back_the_jobs_it_claimed_but_did_not_start(services: Services) -> None:
    queue = services.queue
    with running_worker(services, lanes=["interactive"]) as worker:
        _warm_up(queue)
        sleeper, *behind = queue.enqueue_many([JobSpec("noop", {"sleep_s": 1.5})] + [JobSpec("noop")] * 5)
        deadline = time.monotonic() + 10
        while queue.get(sleeper).progress == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        held = [queue.get(job_id) for job_id in behind]
        assert all(job.status is JobStatus.RUNNING and job.lease_owner == worker.id for job in held), \
            "the jobs behind the sleeper were claimed with it"
        worker.request_stop()
    assert queue.get(sleeper).status is JobStatus.SUCCEEDED, "the running job finished within the grace period"
    for job_id in behind:
        job = queue.get(job_id)
        assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None), \
            "claimed but never started: back in the queue, no attempt counted"
