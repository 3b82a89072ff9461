"""The label-map cache and the `segment` job, on SQLite and PostgreSQL: one inference per (image, model)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import select

import jobs.segmentation as cache
from core.segmentation import OnnxSegmenter
from db.models import Segmentation
from jobs.images import ImageNotFound, encode_png, store_upload
from jobs.queue import JobStatus
from jobs.registry import InvalidPayload
from jobs.segmentation import (
    SegmentationNotFound,
    SegmenterNotConfigured,
    find_segmentation,
    load_segmentation,
    segment_image,
)
from jobs.services import Services
from tests.conftest import running_worker
from tests.test_segmentation_support import (
    COLOURS,
    LABELS,
    build_colour_segmenter,
    paint,
    person_labels,
)

PRESENT = ("Background", "Hair", "Upper-clothes", "Dress", "Face", "Left-arm", "Right-arm")


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_colour_segmenter(tmp_path_factory.mktemp("models") / "colours.onnx")


@pytest.fixture
def inferences(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every real inference, by model id."""
    calls: list[str] = []
    real = OnnxSegmenter.segment

    def counted(self: OnnxSegmenter, rgb: np.ndarray, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(self.model_id)
        return real(self, rgb, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(OnnxSegmenter, "segment", counted)
    return calls


def _store_person(services: Services, seed: int = 0) -> int:
    return store_upload(services, encode_png(paint(person_labels(), seed=seed))).id


def test_a_cache_hit_runs_no_second_inference(services: Services, colour_model: Path, inferences: list[str]) -> None:
    image_id = _store_person(services)
    first = segment_image(services, image_id, colour_model)
    assert not first.cached and inferences == ["colours@000000000001"]
    assert np.array_equal(first.label_map, person_labels())
    assert first.label_names == LABELS and first.present == PRESENT
    assert first.model_id == "colours@000000000001" and first.image_id == image_id

    again = segment_image(services, image_id, colour_model)
    assert again.cached and inferences == ["colours@000000000001"]
    assert again.segmentation_id == first.segmentation_id
    assert np.array_equal(again.label_map, first.label_map) and again.label_map.shape == (128, 128)
    assert (again.label_names, again.present, again.shares) == (first.label_names, first.present, first.shares)

    loaded = load_segmentation(services, first.segmentation_id)
    assert np.array_equal(loaded.label_map, first.label_map) and loaded.present == PRESENT
    assert find_segmentation(services, image_id, first.model_id) is not None
    assert find_segmentation(services, image_id, "other@000000000000") is None
    with services.database.session() as session:
        rows = session.exec(select(Segmentation)).all()
    assert len(rows) == 1 and rows[0].labels[1] == {"name": "Hair", "id": 2, "share": first.shares["Hair"]}


def test_the_same_bytes_uploaded_again_hit_the_cache(services: Services, colour_model: Path,
                                                     inferences: list[str]) -> None:
    first = segment_image(services, _store_person(services), colour_model)
    second = segment_image(services, _store_person(services), colour_model)  # same sha256, same image row
    assert second.cached and second.segmentation_id == first.segmentation_id and len(inferences) == 1
    other = segment_image(services, _store_person(services, seed=1), colour_model)
    assert not other.cached and len(inferences) == 2


def test_another_model_segments_the_image_again(services: Services, colour_model: Path, tmp_path: Path,
                                                inferences: list[str]) -> None:
    image_id = _store_person(services)
    first = segment_image(services, image_id, colour_model)
    shuffled = build_colour_segmenter(tmp_path / "other.onnx", model_id="other@000000000002",
                                      colours=COLOURS[::-1].copy(), labels=LABELS[::-1])
    second = segment_image(services, image_id, shuffled)
    assert not second.cached and second.segmentation_id != first.segmentation_id
    assert inferences == ["colours@000000000001", "other@000000000002"]
    assert second.present == tuple(reversed(PRESENT))
    assert np.array_equal(second.label_map, len(LABELS) - 1 - person_labels())


def test_the_configured_segmenter_is_the_default(services: Services, colour_model: Path) -> None:
    image_id = _store_person(services)
    with pytest.raises(SegmenterNotConfigured, match="No segmenter is configured; install the embedded one"):
        segment_image(services, image_id)
    services.settings = services.settings.model_copy(update={"segmenter": colour_model})
    assert segment_image(services, image_id).present == PRESENT
    with pytest.raises(ImageNotFound):
        segment_image(services, image_id + 1000)
    with pytest.raises(SegmentationNotFound, match="There is no segmentation 999."):
        load_segmentation(services, 999)


def test_concurrent_requests_share_one_inference(services: Services, colour_model: Path,
                                                 inferences: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    image_id = _store_person(services)
    real = cache._compute

    def slow_compute(*args: object):  # type: ignore[no-untyped-def]
        time.sleep(0.2)  # keep the first request inside the inference while the others arrive
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cache, "_compute", slow_compute)
    results = []
    threads = [threading.Thread(target=lambda: results.append(segment_image(services, image_id, colour_model)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(inferences) == 1
    assert len({r.segmentation_id for r in results}) == 1
    assert sorted(r.cached for r in results) == [False, True, True, True]


def test_losing_the_insert_race_to_another_process_reads_the_winner(services: Services, colour_model: Path) -> None:
    image_id = _store_person(services)
    winner = segment_image(services, image_id, colour_model)
    # What a second process does when it missed the cache at the same moment: compute, then insert.
    loser = cache._compute(services, image_id, colour_model)
    assert loser.segmentation_id == winner.segmentation_id and not loser.cached
    with services.database.session() as session:
        assert len(session.exec(select(Segmentation)).all()) == 1


def test_the_segment_job_returns_the_labels_and_uses_the_cache(services: Services, colour_model: Path,
                                                               inferences: list[str]) -> None:
    image_id = _store_person(services)
    unset = services.queue.enqueue("segment", {"image_id": image_id}, lane="interactive")
    with running_worker(services, lanes=["interactive"]) as _:
        assert _wait(services, unset).status is JobStatus.FAILED
    # The worker segments with its own configured segmenter; the payload names only the image.
    worker_services = Services.from_settings(services.settings.model_copy(update={"segmenter": colour_model}))
    with running_worker(worker_services, lanes=["interactive"]) as _:
        first = _wait(services, services.queue.enqueue("segment", {"image_id": image_id}, lane="interactive"))
        second = _wait(services, services.queue.enqueue("segment", {"image_id": image_id}, lane="interactive"))
    assert first.status is JobStatus.SUCCEEDED and first.result is not None
    assert first.result["labels"] == list(PRESENT) and first.result["cached"] is False
    assert set(first.result["shares"]) == set(PRESENT) and first.result["notes"] == []
    assert second.result is not None and second.result["cached"] is True
    assert second.result["segmentation_id"] == first.result["segmentation_id"]
    assert len(inferences) == 1
    assert "CHATEDIT_SEGMENTER" in (services.queue.get(unset).error_message or "")


def test_a_segment_payload_names_an_image_and_nothing_else(services: Services, colour_model: Path) -> None:
    """A payload that names a file would let anyone who may submit a job make the worker open it."""
    with pytest.raises(InvalidPayload, match="unknown key 'segmenter'"):
        services.queue.enqueue("segment", {"image_id": 1, "segmenter": str(colour_model)}, lane="interactive")
    with pytest.raises(InvalidPayload, match="image_id"):
        services.queue.enqueue("segment", {"image_id": "7"}, lane="interactive")
    with pytest.raises(InvalidPayload, match="image_id is missing"):
        services.queue.enqueue("segment", {}, lane="interactive")


def test_a_missing_configured_segmenter_fails_the_job_once_with_a_sentence(services: Services,
                                                                          colour_model: Path) -> None:
    image_id = _store_person(services)
    gone = colour_model.with_name("gone.onnx")
    worker_services = Services.from_settings(services.settings.model_copy(update={"segmenter": gone}))
    with running_worker(worker_services, lanes=["interactive"]) as _:
        job = _wait(services, services.queue.enqueue("segment", {"image_id": image_id}, lane="interactive"))
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert (job.error_message or "").startswith("There is no segmenter at")


def _wait(services: Services, job_id: int, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = services.queue.get(job_id)
        if job.terminal:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")
