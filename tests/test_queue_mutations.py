"""Queue promises that once held only by accident: each test here fails when its promise is broken.

- A claim skips a row another transaction holds (``FOR UPDATE SKIP LOCKED``) instead of
  waiting for it: a worker is never held up by another worker's claim.
- A newcomer's burst takes turns with an existing backlog instead of jumping it (the fair
  rank starts no lower than the lane's lowest queued rank), on every enqueue path:
  several jobs in one call, and one job per call (PostgreSQL's one-statement enqueue).
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from jobs.queue import JobRecord, JobSpec, JobStatus
from jobs.services import Services

W = "worker-a"
#: Generous: a claim that skips the locked row answers at once; one that waits never answers until the lock goes.
CLAIM_DEADLINE_S = 20.0


def _add_bob(services: Services) -> None:
    with services.database.write() as conn:
        conn.execute(sa.text("INSERT INTO users (id, name, display_name, role, created_at) "
                             "VALUES (2, 'bob', 'Bob', 'editor', CURRENT_TIMESTAMP)"))


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_claim_skips_the_head_row_locked_by_another_transaction(services: Services) -> None:
    queue = services.queue
    head, second = queue.enqueue("noop"), queue.enqueue("noop")
    answers: list[JobRecord | None] = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            answers.append(queue.claim(W, ["interactive"], lease_s=30))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread below
            errors.append(exc)

    with services.database.engine.connect() as other:
        locking = other.begin()
        other.execute(sa.text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": head})
        claimer = threading.Thread(target=claim, name="claimer", daemon=True)
        claimer.start()
        claimer.join(timeout=CLAIM_DEADLINE_S)
        waited_for_the_lock = claimer.is_alive()
        locking.rollback()
    claimer.join(timeout=CLAIM_DEADLINE_S)
    assert not errors, errors
    assert not waited_for_the_lock, "the claim waited for the row another transaction holds instead of skipping it"
    assert [job.id if job else None for job in answers] == [second]
    assert queue.get(head).status is JobStatus.QUEUED, "the locked row was left for its holder"


@pytest.mark.parametrize("arrival", ["burst in one call", "one job per call"])
def test_a_newcomers_burst_takes_turns_with_the_backlog_it_finds(services: Services, arrival: str) -> None:
    queue = services.queue
    _add_bob(services)
    alice = queue.enqueue_many([JobSpec("noop", {"echo": n}, owner_id=1) for n in range(30)])
    for _ in range(10):  # alice's backlog is being worked on when bob arrives
        job = queue.claim(W, ["interactive"], lease_s=30)
        assert job is not None and queue.complete(job.id, W)
    specs = [JobSpec("noop", {"echo": n}, owner_id=2) for n in range(5)]
    if arrival == "burst in one call":
        bob = queue.enqueue_many(specs)
    else:
        bob = [queue.enqueue(spec.kind, spec.payload, owner_id=spec.owner_id) for spec in specs]

    order = [queue.claim(W, ["interactive"], lease_s=30).id for _ in range(25)]  # type: ignore[union-attr]

    waiting = alice[10:]
    turns = [job_id for pair in zip(waiting, bob, strict=False) for job_id in pair]
    assert order == turns + waiting[len(bob):], "bob's jobs take turns with alice's backlog, one each"
    assert order.index(waiting[0]) < order.index(bob[0]), "the backlog's head keeps its place"
