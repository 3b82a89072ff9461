"""The queue's promises, on SQLite and PostgreSQL: claim order, fairness, retries, cancel, leases, terminal states."""

from __future__ import annotations

import random
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from jobs.errors import InvalidJobRequest, JobNotFound, PermanentError, RetryableError
from jobs.queue import CancelOutcome, ErrorInfo, JobQueue, JobSpec, JobStatus, RetryPolicy
from jobs.services import Services
from tests.conftest import ManualClock, running_worker

W = "worker-a"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def queue(services: Services, clock: ManualClock) -> JobQueue:
    policy = RetryPolicy(base_delay_s=10.0, factor=2.0, max_delay_s=100.0, jitter=0.25)
    return JobQueue(services.database, policy=policy, clock=clock, rng=random.Random(7))


def _claim(queue: JobQueue, lanes: tuple[str, ...] = ("interactive",), worker: str = W, lease_s: float = 30.0):
    return queue.claim(worker, lanes, lease_s=lease_s)


def _add_bob(services: Services) -> None:
    """A second person (id 2), for fairness between owners."""
    with services.database.write() as conn:
        conn.execute(sa.text("INSERT INTO users (id, name, display_name, role, created_at) "
                             "VALUES (2, 'bob', 'Bob', 'editor', CURRENT_TIMESTAMP)"))


def test_a_job_runs_from_queued_to_succeeded_with_its_result(queue: JobQueue) -> None:
    job_id = queue.enqueue("noop", {"echo": 1})
    assert queue.get(job_id).status is JobStatus.QUEUED

    job = _claim(queue)
    assert job is not None and job.id == job_id
    assert (job.status, job.attempts, job.lease_owner, job.payload) == (JobStatus.RUNNING, 1, W, {"echo": 1})
    assert _claim(queue) is None, "a running job is not handed out twice"

    assert queue.complete(job_id, W, {"answer": 42})
    done = queue.get(job_id)
    assert (done.status, done.result, done.progress) == (JobStatus.SUCCEEDED, {"answer": 42}, 1.0)
    assert done.finished_at is not None and done.finished_at.tzinfo is not None


def test_unknown_lane_and_missing_job_are_refused_with_reasons(queue: JobQueue) -> None:
    with pytest.raises(InvalidJobRequest, match="Unknown lane 'fast'"):
        queue.enqueue("noop", lane="fast")
    with pytest.raises(JobNotFound, match="There is no job 12345"):
        queue.get(12345)
    with pytest.raises(JobNotFound):
        queue.cancel(12345)


def test_higher_priority_runs_first_then_oldest(queue: JobQueue) -> None:
    low = queue.enqueue("noop", priority=0)
    high = queue.enqueue("noop", priority=5)
    low2 = queue.enqueue("noop", priority=0)
    order = [_claim(queue).id for _ in range(3)]
    assert order == [high, low, low2]


def test_round_robin_between_two_owners(queue: JobQueue, services: Services) -> None:
    _add_bob(services)
    alice = [queue.enqueue("noop", {"echo": i}, owner_id=1) for i in range(6)]
    bob = [queue.enqueue("noop", {"echo": i}, owner_id=2) for i in range(3)]
    order = [_claim(queue).id for _ in range(9)]
    assert order == [alice[0], bob[0], alice[1], bob[1], alice[2], bob[2], alice[3], alice[4], alice[5]]


def test_one_persons_backlog_never_starves_anothers_single_job(queue: JobQueue, services: Services) -> None:
    _add_bob(services)
    queue.enqueue_many([JobSpec("noop", owner_id=1) for _ in range(50)])
    for _ in range(10):  # alice's backlog is being worked on when bob arrives
        queue.complete(_claim(queue).id, W)
    bobs = queue.enqueue("noop", owner_id=2)
    next_two = [_claim(queue).id for _ in range(2)]
    assert bobs in next_two


def test_a_worker_claims_only_its_lanes_in_its_order(queue: JobQueue) -> None:
    batch = queue.enqueue("noop", lane="batch")
    gpu = queue.enqueue("noop", lane="gpu")
    assert _claim(queue, ("interactive",)) is None
    assert _claim(queue, ("gpu", "batch")).id == gpu
    assert _claim(queue, ("interactive", "batch")).id == batch


def test_cancel_a_queued_job_takes_effect_at_once(queue: JobQueue) -> None:
    job_id = queue.enqueue("noop")
    assert queue.cancel(job_id) is CancelOutcome.CANCELLED
    assert queue.get(job_id).status is JobStatus.CANCELLED
    assert _claim(queue) is None


def test_cancel_a_running_job_asks_it_to_stop_and_it_is_never_retried(queue: JobQueue) -> None:
    job_id = queue.enqueue("noop")
    job = _claim(queue)
    assert queue.cancel(job_id) is CancelOutcome.REQUESTED
    assert queue.get(job_id).status is JobStatus.RUNNING
    assert queue.report_progress(job_id, W, 0.5).cancel_requested
    # Even a retryable failure after the cancel request ends the job as cancelled.
    assert queue.fail(job, W, ErrorInfo("RetryableError", "flaky"), retryable=True) is JobStatus.CANCELLED
    assert queue.get(job_id).status is JobStatus.CANCELLED
    assert _claim(queue) is None


def test_a_real_worker_stops_a_running_job_when_cancelled(services: Services) -> None:
    queue = services.queue
    job_id = queue.enqueue("noop", {"sleep_s": 30})
    with running_worker(services, lanes=["interactive"]):
        deadline = time.monotonic() + 10
        while queue.get(job_id).status is not JobStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
        assert queue.cancel(job_id) is CancelOutcome.REQUESTED
        job = queue.wait(job_id, timeout_s=10)
    assert job.status is JobStatus.CANCELLED
    assert job.progress < 0.5, "the handler stopped early instead of finishing its work"


def test_retryable_failure_backs_off_then_runs_again_until_attempts_run_out(queue: JobQueue, clock: ManualClock) -> None:
    job_id = queue.enqueue("noop", max_attempts=3)
    delays = []
    for attempt in (1, 2):
        job = _claim(queue)
        assert job.attempts == attempt
        assert queue.fail(job, W, ErrorInfo("RetryableError", "busy"), retryable=True) is JobStatus.QUEUED
        queued = queue.get(job_id)
        delay = (queued.run_after - clock()).total_seconds()
        delays.append(delay)
        assert _claim(queue) is None, "not claimable before its backoff has passed"
        clock.advance(delay + 0.001)
    # 10 s then 20 s, each within ±25 % jitter.
    assert 7.5 <= delays[0] <= 12.5 and 15.0 <= delays[1] <= 25.0
    job = _claim(queue)
    assert queue.fail(job, W, ErrorInfo("RetryableError", "busy"), retryable=True) is JobStatus.FAILED
    final = queue.get(job_id)
    assert (final.status, final.attempts, final.error_type, final.error_message) == (
        JobStatus.FAILED, 3, "RetryableError", "busy")


def test_permanent_failure_fails_at_once(queue: JobQueue) -> None:
    job_id = queue.enqueue("noop", max_attempts=5)
    job = _claim(queue)
    assert queue.fail(job, W, ErrorInfo("PermanentError", "bad input"), retryable=False) is JobStatus.FAILED
    assert queue.get(job_id).attempts == 1


def test_retry_policy_classifies_errors() -> None:
    policy = RetryPolicy()
    assert policy.is_retryable(RetryableError("gpu busy"))
    assert policy.is_retryable(ConnectionError("reset"))
    assert not policy.is_retryable(PermanentError("bad"))
    assert not policy.is_retryable(ValueError("a bug or bad input"))
    lost = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    assert policy.is_retryable(lost), "a database that went away (a restart) may be back for the next attempt"
    assert not policy.is_retryable(sa.exc.ProgrammingError("SELEC 1", {}, Exception("syntax error")))


def test_terminal_states_are_never_left(queue: JobQueue, services: Services) -> None:
    done = queue.enqueue("noop")
    job = _claim(queue)
    assert queue.complete(done, W, {"ok": True})
    assert not queue.complete(done, W, {"ok": False})
    assert queue.fail(job, W, ErrorInfo("X", "late"), retryable=True) is None
    assert not queue.mark_cancelled(done, W)
    assert not queue.release(done, W)
    assert queue.cancel(done) is CancelOutcome.ALREADY_FINISHED
    assert queue.get(done).status is JobStatus.SUCCEEDED and queue.get(done).result == {"ok": True}

    cancelled = queue.enqueue("noop")
    queue.cancel(cancelled)
    assert _claim(queue) is None
    assert queue.reap_expired().total == 0
    # Not even a direct UPDATE can move a terminal job: the database refuses.
    for job_id in (done, cancelled):
        with pytest.raises(DBAPIError, match="terminal|cannot become"):
            with services.database.write() as conn:
                conn.execute(sa.text("UPDATE jobs SET status = 'queued' WHERE id = :id"), {"id": job_id})
    assert queue.get(cancelled).status is JobStatus.CANCELLED


def test_retry_of_a_failed_job_is_a_new_job(queue: JobQueue) -> None:
    job_id = queue.enqueue("noop", {"echo": 1}, lane="gpu", priority=3)
    job = _claim(queue, ("gpu",))
    queue.fail(job, W, ErrorInfo("PermanentError", "no model"), retryable=False)
    new_id = queue.retry(job_id)
    assert new_id != job_id
    new = queue.get(new_id)
    assert (new.status, new.retry_of, new.payload, new.lane, new.priority, new.attempts) == (
        JobStatus.QUEUED, job_id, {"echo": 1}, "gpu", 3, 0)
    assert queue.get(job_id).status is JobStatus.FAILED
    with pytest.raises(InvalidJobRequest, match="only a failed or cancelled job"):
        queue.retry(new_id)


def test_expired_leases_are_reaped(queue: JobQueue, clock: ManualClock) -> None:
    again = queue.enqueue("noop", max_attempts=2)
    last_try = queue.enqueue("noop", max_attempts=1)
    cancelled = queue.enqueue("noop")
    for _ in range(3):
        _claim(queue, lease_s=5)
    queue.cancel(cancelled)
    assert queue.reap_expired().total == 0, "leases still valid"
    clock.advance(6)
    report = queue.reap_expired()
    assert (report.requeued, report.failed, report.cancelled) == (1, 1, 1)
    assert queue.get(again).status is JobStatus.QUEUED and queue.get(again).error_type == "LeaseExpired"
    assert queue.get(last_try).status is JobStatus.FAILED
    assert queue.get(cancelled).status is JobStatus.CANCELLED
    # The worker that lost the lease cannot settle the job any more; the new owner can.
    assert not queue.complete(again, W)
    job = _claim(queue, worker="worker-b")
    assert (job.id, job.attempts) == (again, 2)
    assert queue.complete(again, "worker-b")


def test_heartbeat_renews_the_lease_and_reports_lost_jobs(queue: JobQueue, clock: ManualClock) -> None:
    kept = queue.enqueue("noop")
    lost = queue.enqueue("noop")
    _claim(queue, lease_s=5)
    _claim(queue, worker="worker-b", lease_s=5)
    clock.advance(4)
    states = queue.renew_leases(W, [kept, lost], lease_s=5)
    assert states[kept].owned and not states[lost].owned
    clock.advance(4)
    queue.reap_expired()
    assert queue.get(kept).status is JobStatus.RUNNING
    assert queue.get(lost).status is JobStatus.QUEUED


def test_release_hands_a_job_back_without_counting_the_attempt(queue: JobQueue) -> None:
    job_id = queue.enqueue("noop")
    _claim(queue)
    assert queue.release(job_id, W)
    job = queue.get(job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None)
    assert _claim(queue).attempts == 1


def test_progress_is_recorded_and_clamped(queue: JobQueue) -> None:
    job_id = queue.enqueue("noop")
    _claim(queue)
    assert queue.report_progress(job_id, W, 0.4, "step 4/10").owned
    job = queue.get(job_id)
    assert (job.progress, job.progress_message) == (0.4, "step 4/10")
    queue.report_progress(job_id, W, 7.0)
    assert queue.get(job_id).progress == 1.0
    assert not queue.report_progress(job_id, "someone-else", 0.5).owned


def test_outputs_are_keyed_by_job_and_name(queue: JobQueue, services: Services) -> None:
    job_id = queue.enqueue("noop")
    key = services.blobs.put(b"result")
    assert queue.record_output(job_id, "image", key, 6)
    assert not queue.record_output(job_id, "image", key, 6), "a re-run writes the same output once"
    assert [(o.name, o.blob_key) for o in queue.outputs(job_id)] == [("image", key)]


def test_queue_depth_per_lane_and_status(queue: JobQueue) -> None:
    queue.enqueue("noop")
    queue.enqueue("noop")
    queue.enqueue("noop", lane="gpu")
    _claim(queue)
    counts = queue.counts()
    assert counts[("interactive", "queued")] == 1
    assert counts[("interactive", "running")] == 1
    assert counts[("gpu", "queued")] == 1


def test_settle_and_claim_settles_finished_jobs_and_takes_the_next_in_lane_order(queue: JobQueue) -> None:
    first = queue.enqueue("noop")
    later = queue.enqueue("noop", lane="batch")
    lanes = ("interactive", "batch")
    assert _claim(queue, lanes).id == first
    won, nxt = queue.settle_and_claim(W, {first: {"r": 1}}, lanes=lanes, lease_s=30)
    assert won == {first} and [job.id for job in nxt] == [later]
    assert (nxt[0].status, nxt[0].lease_owner, nxt[0].attempts) == (JobStatus.RUNNING, W, 1)
    assert (queue.get(first).status, queue.get(first).result) == (JobStatus.SUCCEEDED, {"r": 1})
    assert queue.settle_and_claim(W, {later: None}, lanes=lanes, lease_s=30) == ({later}, [])
    assert queue.get(later).result is None
    again = queue.enqueue("noop")
    won, nxt = queue.settle_and_claim(W, {first: {"r": 2}}, lanes=lanes, lease_s=30)
    assert not won, "a finished job is not completed twice"
    assert [job.id for job in nxt] == [again], "but the free worker still gets work"
    assert queue.get(first).result == {"r": 1}


def test_a_batch_claim_takes_jobs_in_claim_order_and_settles_each_with_its_own_result(
    queue: JobQueue, services: Services
) -> None:
    _add_bob(services)
    alice = [queue.enqueue("noop", {"echo": n}, owner_id=1) for n in range(4)]
    urgent = queue.enqueue("noop", priority=5, owner_id=1)
    bob = queue.enqueue("noop", owner_id=2)
    batch = queue.claim_many(W, ["interactive"], lease_s=30, limit=4)
    # priority first, then round-robin between owners (bob's one job right after alice's first), then age
    assert [job.id for job in batch] == [urgent, alice[0], bob, alice[1]]
    assert all(job.status is JobStatus.RUNNING and job.lease_owner == W for job in batch)

    results = {job.id: {"id": job.id} for job in batch}
    results[bob] = None
    won, more = queue.settle_and_claim(W, results, lanes=["interactive"], lease_s=30, limit=10)
    assert won == set(results)
    assert [job.id for job in more] == alice[2:], "the rest of the lane, no more than there is"
    for job_id, result in results.items():
        assert (queue.get(job_id).status, queue.get(job_id).result) == (JobStatus.SUCCEEDED, result)

    queue.cancel(alice[3])  # cancel requested while it waits in the worker's batch
    stolen = "worker-b"
    assert queue.settle_and_claim(stolen, {alice[2]: {"x": 1}}, lanes=(), lease_s=30) == (frozenset(), [])
    assert queue.get(alice[2]).status is JobStatus.RUNNING, "another worker cannot settle this worker's job"
    assert sorted(queue.release([job.id for job in more], W)) == sorted(alice[2:])
    assert (queue.get(alice[2]).status, queue.get(alice[2]).attempts) == (JobStatus.QUEUED, 0)
    assert queue.get(alice[3]).status is JobStatus.CANCELLED, "a cancelled job handed back stays cancelled"
