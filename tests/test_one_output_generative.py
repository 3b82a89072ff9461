"""One output per job for ``generate`` and ``swap_face``: a job that runs again still has one image and one step.

The queue delivers at least once, and a generative run need not repeat itself to the bit
(a random seed here), so the second attempt must find what the first stored: one image row,
one history and step, and the job's output, its step and its result naming the same image.
The rows are made by the job's owner, whatever the payload says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from core.recipes import read_recipe
from db.migrate import upgrade
from db.models import History, Step, User
from db.models import Image as ImageRow
from jobs.context import JobContext
from jobs.handlers import generate as generate_handler
from jobs.handlers import swap_face as swap_face_handler
from jobs.handlers.generate import submit_generate
from jobs.handlers.swap_face import submit_swap_face
from jobs.histories import get_history, history_steps, start_history
from jobs.images import image_png, store_array
from jobs.queue import JobStatus
from jobs.registry import InvalidPayload
from jobs.services import Services
from tests.diffusion_support import FAST, TinyModels, generative_settings
from tests.test_generative_face_swap import _portrait, face_swap_services


def _count(services: Services, table: type, *where: sa.ColumnElement[bool]) -> int:
    with services.database.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def _second_user(services: Services) -> int:
    with services.database.write_session() as session:
        user = User(name="bea")
        session.add(user)
        session.flush()
        assert user.id is not None
        return user.id


def _run_twice(services: Services, job_id: int, handle: Callable[[JobContext], dict[str, Any]]
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Attempt 1 stores its work and its worker "dies" before settling (its lease already over); attempt 2 settles."""
    queue = services.queue
    lanes = [queue.get(job_id).lane]
    doomed = queue.claim("doomed", lanes, lease_s=-1.0)
    assert doomed is not None
    first = handle(JobContext(doomed, services, "doomed"))
    assert queue.reap_expired().requeued == 1
    survivor = queue.claim("survivor", lanes, lease_s=60.0)
    assert survivor is not None and survivor.attempts == 2
    second = handle(JobContext(survivor, services, "survivor"))
    assert queue.complete(job_id, "survivor", second)
    return first, second


def _assert_one_image(services: Services, job_id: int, result: dict[str, Any], step_image: int | None) -> bytes:
    (output,) = [o for o in services.queue.outputs(job_id) if o.name == "image"]
    png = image_png(services, result["image_id"])
    assert services.blobs.get(output.blob_key) == png, "the output is the image the step and result name"
    assert step_image == result["image_id"]
    recipe = read_recipe(png)
    assert recipe is not None and recipe["job_id"] == job_id
    assert not recipe.get("timings") and all("timings" not in g for g in recipe["generation"]), \
        "how long a run took is the job's result, not the image's recipe"
    assert result["timings"]["total_s"] >= 0
    return png


# ---------------------------------------------------------------------------- generate


@pytest.fixture
def generative(tmp_path: Path, tiny_models: TinyModels) -> Iterator[Services]:
    svc = Services.from_settings(generative_settings(tmp_path, tiny_models))
    upgrade(svc.database)
    yield svc
    svc.close()


def test_a_generate_job_that_runs_twice_keeps_one_image_and_one_history(generative: Services) -> None:
    services = generative
    owner = _second_user(services)
    job_id = submit_generate(services, "a lighthouse at dusk", title="lighthouse", user_id=owner,
                             user_settings={**FAST, "seed": -1, "width": 64, "height": 48})
    assert "user_id" not in services.queue.get(job_id).payload, "a payload never says who asked"

    first, second = _run_twice(services, job_id, generate_handler.handle)

    job = services.queue.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.result == second
    assert first["image_id"] == second["image_id"]
    assert (first["history_id"], first["root_step_id"]) == (second["history_id"], second["root_step_id"])
    assert _count(services, ImageRow) == 1 and _count(services, History) == 1
    assert _count(services, Step) == 1 and _count(services, Step, Step.job_id == job_id) == 1
    (step,) = history_steps(services, second["history_id"])
    png = _assert_one_image(services, job_id, second, step.image_id)
    recipe = read_recipe(png)
    assert recipe is not None and second["seed"] == recipe["seed"] == first["seed"], \
        "the result tells the seed of the image the job kept"
    assert second["generation"][0]["seed"] == first["seed"]
    history = get_history(services, second["history_id"])
    assert (history.owner_id, step.created_by, history.title) == (owner, owner, "lighthouse")
    with services.database.read() as conn:
        assert conn.execute(sa.select(ImageRow.created_by)).scalar_one() == owner


def test_a_generate_payload_cannot_name_who_asked(generative: Services) -> None:
    with pytest.raises(InvalidPayload, match="unknown key 'user_id'"):
        generative.queue.enqueue("generate", {"prompt": "x", "user_id": 2}, lane="gpu")
    assert generative.queue.list() == []


# ---------------------------------------------------------------------------- swap_face


@pytest.fixture
def face_swap(tmp_path: Path) -> Iterator[Services]:
    yield from face_swap_services(tmp_path)


def test_a_swap_face_job_that_runs_twice_keeps_one_image_and_one_step(face_swap: Services,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    services = face_swap
    owner = _second_user(services)
    target_id = store_array(services, _portrait((slice(24, 72), slice(24, 72)))).id
    source_id = store_array(services, _portrait((slice(10, 60), slice(30, 80)))).id
    history = start_history(services, target_id, owner_id=owner)
    job_id = submit_swap_face(services, source_image_id=source_id, target_image_id=target_id, user_id=owner,
                              history_id=history.history_id, parent_step_id=history.root_step_id)
    assert "user_id" not in services.queue.get(job_id).payload, "a payload never says who asked"

    # The second run's pixels differ (as a model on another device may): the first run's image stays the job's.
    runs = iter([0, 1])
    swap = swap_face_handler._swapper(services).swap_largest

    def differing(source: np.ndarray, target: np.ndarray) -> np.ndarray:
        swapped = swap(source, target)
        return swapped if next(runs) == 0 else 255 - swapped

    monkeypatch.setattr(swap_face_handler._swapper(services), "swap_largest", differing)
    first, second = _run_twice(services, job_id, swap_face_handler.handle)

    job = services.queue.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.result == second
    assert first["image_id"] == second["image_id"] and first["step_id"] == second["step_id"]
    assert _count(services, ImageRow) == 3, "the two inputs and one swapped image"
    assert _count(services, Step, Step.job_id == job_id) == 1
    steps = history_steps(services, history.history_id)
    assert len(steps) == 2 and steps[-1].id == second["step_id"]
    png = _assert_one_image(services, job_id, second, steps[-1].image_id)
    assert steps[-1].created_by == owner
    with services.database.read() as conn:
        made_by = conn.execute(sa.select(ImageRow.created_by).where(ImageRow.id == second["image_id"])).scalar_one()
    assert made_by == owner
    assert read_recipe(png)["source_image_id"] == target_id


def test_a_swap_face_payload_cannot_name_who_asked(face_swap: Services) -> None:
    with pytest.raises(InvalidPayload, match="unknown key 'user_id'"):
        face_swap.queue.enqueue("swap_face", {"source_image_id": 1, "target_image_id": 2, "user_id": 2}, lane="gpu")
    assert face_swap.queue.list() == []
