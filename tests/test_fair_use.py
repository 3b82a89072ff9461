"""Fair use, on SQLite and PostgreSQL: no one may have more than CHATEDIT_MAX_QUEUED_JOBS_PER_PERSON jobs queued.

The limit refuses new jobs whole, with a sentence, and holds when enqueues race; a job
that goes back to the queue (a worker's retry, the reaper, a worker shutting down) is
never refused, and finishing or cancelling a job frees its place.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.ui.samples import sample_png
from core.settings import Settings, SettingsError, load_settings
from db.models import User
from db.types import utcnow
from jobs.conversations import add_message, messages
from jobs.errors import InvalidJobRequest, TooManyQueuedJobs
from jobs.histories import start_history
from jobs.images import encode_png, store_upload
from jobs.queue import CancelOutcome, ErrorInfo, JobQueue, JobSpec, JobStatus, jobs_t
from jobs.services import Services
from jobs.user_settings import save_preferences
from tests.app_support import open_app
from tests.conftest import ManualClock, services_with
from tests.test_segmentation_support import build_colour_segmenter, paint, person_labels

W = "worker-a"
ALICE, BOB = 1, 2
LIMIT = 3


@pytest.fixture
def limited(settings: Settings, services: Services) -> Iterator[Services]:
    """Services configured as a deployment would be, with a limit of three queued jobs per person."""
    with services_with(settings, max_queued_jobs_per_person=LIMIT) as svc:
        yield svc


def _add_bob(services: Services) -> None:
    with services.database.write() as conn:
        conn.execute(sa.insert(User.__table__).values(id=BOB, name="bob", display_name="Bob", created_at=utcnow()))


def _queued(services: Services, owner_id: int = ALICE) -> int:
    with services.database.read() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where((jobs_t.c.status == "queued") & (jobs_t.c.owner_id == owner_id))
        ).scalar_one()


def test_the_job_past_the_limit_is_refused_with_a_sentence_and_nothing_is_queued(limited: Services) -> None:
    queue = limited.queue
    assert queue.max_queued_per_owner == LIMIT, "the setting reaches the queue"
    for n in range(LIMIT):
        queue.enqueue("noop", {"echo": n}, owner_id=ALICE)

    with pytest.raises(TooManyQueuedJobs) as refused:
        queue.enqueue("noop", {"echo": 99}, owner_id=ALICE)
    assert isinstance(refused.value, InvalidJobRequest), "the UI and CLI show it like any refused request"
    assert str(refused.value) == (
        "You already have 3 jobs waiting, the most one person may queue (CHATEDIT_MAX_QUEUED_JOBS_PER_PERSON); "
        "wait for some to finish or cancel them."
    )
    assert (refused.value.owner_id, refused.value.queued, refused.value.limit) == (ALICE, LIMIT, LIMIT)
    assert refused.value.data == {"owner_id": ALICE, "queued": LIMIT, "limit": LIMIT, "adding": 1}
    with pytest.raises(TooManyQueuedJobs):
        queue.enqueue_many([JobSpec("noop", owner_id=ALICE)])
    assert _queued(limited) == LIMIT
    assert all(job.payload["echo"] != 99 for job in queue.list())


def test_another_person_is_not_held_back_by_someone_elses_full_queue(limited: Services) -> None:
    queue = limited.queue
    _add_bob(limited)
    queue.enqueue_many([JobSpec("noop", owner_id=ALICE) for _ in range(LIMIT)])
    with pytest.raises(TooManyQueuedJobs):
        queue.enqueue("noop", owner_id=ALICE)
    bobs = [queue.enqueue("noop", owner_id=BOB) for _ in range(LIMIT)]
    assert [queue.get(job_id).status for job_id in bobs] == [JobStatus.QUEUED] * LIMIT
    assert (_queued(limited, ALICE), _queued(limited, BOB)) == (LIMIT, LIMIT)


def test_a_batch_over_the_limit_is_refused_whole(limited: Services) -> None:
    queue = limited.queue
    _add_bob(limited)
    with pytest.raises(TooManyQueuedJobs, match=r"^These 4 jobs are more than the 3 one person may queue at once"):
        queue.enqueue_many([JobSpec("noop", owner_id=ALICE) for _ in range(LIMIT + 1)])
    assert _queued(limited) == 0

    queue.enqueue("noop", owner_id=ALICE)
    with pytest.raises(TooManyQueuedJobs) as refused:
        # Bob's job is within his limit, but the batch is refused as one: nothing of it is queued.
        queue.enqueue_many([JobSpec("noop", owner_id=BOB)] + [JobSpec("noop", owner_id=ALICE) for _ in range(3)])
    assert str(refused.value).startswith("You already have 1 job waiting, and these 3 would make 4, more than the 3")
    assert (refused.value.owner_id, refused.value.queued, refused.value.adding) == (ALICE, 1, 3)
    assert (_queued(limited, ALICE), _queued(limited, BOB)) == (1, 0)

    assert len(queue.enqueue_many([JobSpec("noop", owner_id=ALICE) for _ in range(LIMIT - 1)])) == LIMIT - 1
    assert _queued(limited) == LIMIT


def test_finishing_cancelling_or_starting_a_job_frees_a_place(limited: Services) -> None:
    queue = limited.queue
    first, second, third = queue.enqueue_many([JobSpec("noop", {"echo": n}) for n in range(LIMIT)])
    with pytest.raises(TooManyQueuedJobs):
        queue.enqueue("noop")

    assert queue.cancel(second) is CancelOutcome.CANCELLED
    fourth = queue.enqueue("noop")  # the cancelled job's place

    running = queue.claim(W, ["interactive"], lease_s=30)
    assert running is not None and running.id == first
    fifth = queue.enqueue("noop")  # a running job is no longer waiting
    with pytest.raises(TooManyQueuedJobs):
        queue.enqueue("noop")

    assert queue.complete(first, W)
    assert queue.get(first).status is JobStatus.SUCCEEDED
    assert {queue.get(job_id).status for job_id in (third, fourth, fifth)} == {JobStatus.QUEUED}
    assert _queued(limited) == LIMIT


def test_retries_and_requeues_are_never_refused(limited: Services) -> None:
    clock = ManualClock()
    queue = JobQueue(limited.database, clock=clock, max_queued_per_owner=LIMIT)
    failing = queue.enqueue("noop", max_attempts=5)
    reaped = queue.enqueue("noop", max_attempts=5)
    released = queue.enqueue("noop", max_attempts=5)
    jobs = {job.id: job for job in queue.claim_many(W, ["interactive"], lease_s=30, limit=3)}
    assert set(jobs) == {failing, reaped, released}
    queue.enqueue_many([JobSpec("noop") for _ in range(LIMIT)])  # the queue is full again behind them

    # A retryable failure puts the job back (after a backoff), past the limit.
    assert queue.fail(jobs[failing], W, ErrorInfo("RetryableError", "flaky"), retryable=True) is JobStatus.QUEUED
    # A worker shutting down hands its job back.
    assert queue.release(released, W) == [released]
    # A worker that died: the reaper re-queues its job once the lease runs out.
    clock.advance(31)
    assert queue.reap_expired().requeued == 1
    assert {queue.get(job_id).status for job_id in (failing, reaped, released)} == {JobStatus.QUEUED}
    assert _queued(limited) == LIMIT + 3

    # New work is still refused while the person has that many waiting, with the numbers as they are.
    with pytest.raises(TooManyQueuedJobs, match=r"^You already have 6 jobs waiting, more than the 3 one person"):
        queue.enqueue("noop")
    # A retry asked for by a person is a new job, and counts like one.
    newest = queue.list(status="queued", limit=1)[0].id
    assert queue.cancel(newest) is CancelOutcome.CANCELLED
    with pytest.raises(TooManyQueuedJobs):
        queue.retry(newest)
    assert _queued(limited) == LIMIT + 2


def test_zero_means_no_limit(settings: Settings, services: Services) -> None:
    with services_with(settings, max_queued_jobs_per_person=0) as unlimited:
        queue = unlimited.queue
        ids = [queue.enqueue("noop") for _ in range(60)] + queue.enqueue_many([JobSpec("noop") for _ in range(60)])
        assert len(set(ids)) == 120
        assert _queued(unlimited) == 120


def test_the_setting_is_bounded_and_named_when_wrong() -> None:
    assert load_settings(max_queued_jobs_per_person=0).max_queued_jobs_per_person == 0
    for bad in (-1, 10**9):
        with pytest.raises(SettingsError, match="CHATEDIT_MAX_QUEUED_JOBS_PER_PERSON"):
            load_settings(max_queued_jobs_per_person=bad)


@pytest.mark.parametrize("per_call", [1, 2], ids=["one job per call", "two jobs per call"])
def test_enqueues_racing_from_eight_threads_never_pass_the_limit(settings: Settings, services: Services,
                                                                 per_call: int) -> None:
    limit = 5
    with services_with(settings, max_queued_jobs_per_person=limit) as svc:
        queue = svc.queue
        start = threading.Barrier(8)
        queued: list[list[int]] = []
        refused: list[TooManyQueuedJobs] = []
        errors: list[BaseException] = []

        def enqueue() -> None:
            try:
                start.wait(timeout=30)
                if per_call == 1:
                    queued.append([queue.enqueue("noop")])
                else:
                    queued.append(queue.enqueue_many([JobSpec("noop") for _ in range(per_call)]))
            except TooManyQueuedJobs as exc:
                refused.append(exc)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)

        threads = [threading.Thread(target=enqueue, name=f"enqueue-{n}", daemon=True) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert not any(thread.is_alive() for thread in threads)
        fits = limit // per_call
        assert (len(queued), len(refused)) == (fits, 8 - fits)
        assert _queued(svc) == fits * per_call
        assert all(exc.queued + exc.adding > limit for exc in refused)


# ---------------------------------------------------------------- the app says it in a sentence

FULL = "You already have 1 job waiting, the most one person may queue (CHATEDIT_MAX_QUEUED_JOBS_PER_PERSON)"


@pytest.fixture
def full_app(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Services:
    """The app with a limit of one queued job per person, and the local person's one place taken."""
    monkeypatch.setenv("CHATEDIT_MAX_QUEUED_JOBS_PER_PERSON", "1")
    app_env.queue.enqueue("noop")
    return app_env


def _history(services: Services, png: bytes | None = None) -> int:
    image = store_upload(services, png or sample_png("Portrait"))
    return start_history(services, image.id, title="Portrait").history_id


def test_run_all_with_a_full_queue_says_so_and_queues_nothing(full_app: Services) -> None:
    history_id = _history(full_app)
    add_message(full_app, history_id, "assistant", "Brighter.", commands=[
        {"command": "adjust", "paras": ["brightness", 0.2, []], "valid": True, "reason": None}])
    at = open_app(history=str(history_id))
    at.button(key="run_all").click().run()
    assert not at.exception, at.exception
    assert any(e.value.startswith(FULL) and e.value.endswith("Nothing was queued.") for e in at.error), \
        [e.value for e in at.error]
    assert full_app.queue.list(kind="edit") == []


def test_a_plan_job_refused_for_a_full_queue_is_a_sentence_in_the_chat(
        full_app: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    save_preferences(full_app, {"planner": "local"})
    monkeypatch.setenv("CHATEDIT_LOCAL_LLM", str(tmp_path / "model"))
    history_id = _history(full_app)
    at = open_app(history=str(history_id))
    at.chat_input(key="chat_prompt").set_value("make it warmer").run()
    assert not at.exception, at.exception
    last = messages(full_app, history_id)[-1]
    assert last.role == "assistant" and last.content.startswith("I cannot plan this: nothing was queued. " + FULL)
    assert full_app.queue.list(kind="plan") == []
    assert not at.chat_input(key="chat_prompt").disabled


def test_the_segment_job_of_an_upload_counts_and_waits_for_room(
        full_app: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHATEDIT_SEGMENTER", str(build_colour_segmenter(tmp_path / "colours.onnx")))
    history_id = _history(full_app, encode_png(paint(person_labels())))
    at = open_app(history=str(history_id))
    assert any(e.value.startswith("Finding the parts was not queued. " + FULL) for e in at.error), \
        [e.value for e in at.error]
    assert full_app.queue.list(kind="segment") == []

    (waiting,) = full_app.queue.list(status="queued")
    full_app.queue.cancel(waiting.id)
    at.run()  # the page asks again, and now there is room
    assert not at.exception, at.exception
    assert [job.status for job in full_app.queue.list(kind="segment")] == [JobStatus.QUEUED]
