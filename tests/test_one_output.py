"""One output per job: a job that runs again (its worker killed after storing, before settling) still has one image.

The queue delivers at least once, so the second attempt of an edit must find what the first
stored: one image row, one step, and the job's output, its step and its result naming the
same image. A success also clears the error an earlier attempt left on the job.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import sqlalchemy as sa

from core.recipes import read_recipe
from db.models import Image as ImageRow
from db.models import Step
from jobs.context import JobContext
from jobs.edits import EditRequest, submit_edit
from jobs.handlers import edit as edit_handler
from jobs.histories import start_history
from jobs.images import encode_png, image_png, store_array, store_job_image
from jobs.queue import ErrorInfo, JobQueue, JobStatus, RetryPolicy
from jobs.services import Services
from tests.conftest import ManualClock


def _photo() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = np.full((72, 96, 3), (80, 120, 160), dtype=np.uint8)
    image[20:50, 30:70] = (200, 70, 40)
    return np.clip(image.astype(int) + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)


def _count(services: Services, table: type, *where: sa.ColumnElement[bool]) -> int:
    with services.database.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def _attempt(services: Services, lanes: list[str], worker: str, *, lease_s: float) -> tuple[JobContext, dict]:
    """Claim the job as ``worker`` and run the real edit handler on it, without settling."""
    job = services.queue.claim(worker, lanes, lease_s=lease_s)
    assert job is not None
    ctx = JobContext(job, services, worker)
    return ctx, edit_handler.handle(ctx)


def test_an_edit_that_runs_twice_stores_one_image_and_one_step(services: Services) -> None:
    source = store_array(services, _photo())
    history = start_history(services, source.id, title="re-run")
    job_id = submit_edit(services, EditRequest(
        image_id=source.id, history_id=history.history_id, parent_step_id=history.root_step_id,
        commands=[{"command": "adjust", "paras": ["brightness", 0.3, []]}],
    ))
    queue = services.queue
    lanes = [queue.get(job_id).lane]

    # Attempt 1 stores its image and step, then its worker "dies" before settling: the lease
    # is already over (negative length), so the reaper queues the job again.
    _, first = _attempt(services, lanes, "doomed", lease_s=-1.0)
    assert queue.get(job_id).status is JobStatus.RUNNING
    assert queue.reap_expired().requeued == 1
    assert queue.get(job_id).error_type == "LeaseExpired"

    ctx, second = _attempt(services, lanes, "survivor", lease_s=60.0)
    assert ctx.attempt == 2
    assert queue.complete(job_id, "survivor", second)

    job = queue.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.result == second
    assert (job.error_type, job.error_message, job.error_traceback) == (None, None, None), \
        "a succeeded job shows no error from an earlier attempt"
    assert _count(services, ImageRow) == 2, "the source and one edited image"
    assert _count(services, Step, Step.job_id == job_id) == 1
    (output,) = queue.outputs(job_id)
    with services.database.read() as conn:
        step_image = conn.execute(sa.select(Step.image_id).where(Step.job_id == job_id)).scalar_one()
    assert first["image_id"] == second["image_id"] == step_image
    assert first["step_id"] == second["step_id"]
    png = image_png(services, step_image)
    assert services.blobs.get(output.blob_key) == png, "the output is the image the step and result name"
    recipe = read_recipe(png)
    assert recipe is not None and recipe["job_id"] == job_id and not recipe.get("timings")


def test_a_second_attempt_with_different_bytes_gets_the_first_image_back(services: Services) -> None:
    queue = services.queue
    job_id = queue.enqueue("noop")
    first_png = encode_png(_photo(), text={"chatedit": '{"attempt": 1}'})
    second_png = encode_png(255 - _photo(), text={"chatedit": '{"attempt": 2}'})  # e.g. a generative re-run

    first = store_job_image(services, job_id, first_png, width=96, height=72)
    again = store_job_image(services, job_id, second_png, width=1, height=1)

    assert again.id == first.id and again.sha256 == first.sha256
    assert (again.width, again.height) == (96, 72)
    assert _count(services, ImageRow) == 1
    assert [o.blob_key for o in queue.outputs(job_id)] == [first.blob_key]
    assert image_png(services, again.id) == first_png
    other_job = queue.enqueue("noop")
    assert store_job_image(services, other_job, second_png, width=96, height=72).id != first.id


@pytest.fixture
def queue(services: Services) -> tuple[JobQueue, ManualClock]:
    clock = ManualClock()
    policy = RetryPolicy(base_delay_s=1.0, jitter=0.0)
    return JobQueue(services.database, policy=policy, clock=clock, rng=random.Random(1)), clock


@pytest.mark.parametrize("settle", ["complete", "settle_and_claim"])
def test_success_clears_the_error_of_an_earlier_attempt(queue: tuple[JobQueue, ManualClock], settle: str) -> None:
    q, clock = queue
    reaped = q.enqueue("noop", max_attempts=5)
    retried = q.enqueue("noop", max_attempts=5)
    q.claim("w1", ["interactive"], lease_s=5)
    job = q.claim("w1", ["interactive"], lease_s=600)
    assert q.fail(job, "w1", ErrorInfo("RetryableError", "busy", "Traceback ..."), retryable=True) is JobStatus.QUEUED
    clock.advance(10)
    assert q.reap_expired().requeued == 1
    assert q.get(reaped).error_type == "LeaseExpired" and q.get(retried).error_message == "busy"

    claimed = [q.claim("w2", ["interactive"], lease_s=60) for _ in range(2)]
    assert sorted(j.id for j in claimed) == sorted([reaped, retried])
    if settle == "complete":
        assert all(q.complete(j.id, "w2", {"ok": True}) for j in claimed)
    else:
        won, _ = q.settle_and_claim("w2", {j.id: {"ok": True} for j in claimed}, lanes=["interactive"], lease_s=60)
        assert won == {reaped, retried}
    for job_id in (reaped, retried):
        done = q.get(job_id)
        assert done.status is JobStatus.SUCCEEDED and done.result == {"ok": True}
        assert (done.error_type, done.error_message, done.error_traceback) == (None, None, None)

