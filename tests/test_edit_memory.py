"""Edit memory: the estimate and its refusal before queueing and before work, and edits whose copies do not grow.

The memory an edit needs is measured here with tracemalloc (numpy's arrays, OpenCV's
outputs among them); the benchmark (bench/edit_memory.py) measures whole processes.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from core import classical
from core.memory import (
    COMMAND_FOOTPRINTS,
    GENERATIVE_FOOTPRINT,
    HELD,
    LOAD_AND_STORE,
    TooMuchMemory,
    check_memory,
    estimated_memory_mb,
)
from core.settings import Settings
from jobs.edits import EditRequest, InvalidEdit, submit_edit
from jobs.images import store_array
from jobs.queue import JobStatus
from jobs.services import Services
from tests.conftest import running_worker, services_with

ADJUST = [{"command": "adjust", "paras": ["brightness", 0.3, []]}]


# --- the estimate ---------------------------------------------------------------------


def test_the_estimate_is_what_the_job_holds_plus_its_costliest_phase() -> None:
    rgb_mb = 4000 * 3000 * 3 / 2**20
    held = HELD.mb(rgb_mb)

    assert estimated_memory_mb(4000, 3000, ["adjust"]) == int(np.ceil(
        held + max(COMMAND_FOOTPRINTS["adjust"].mb(rgb_mb), LOAD_AND_STORE.mb(rgb_mb))))
    assert estimated_memory_mb(4000, 3000, ["change"]) == int(np.ceil(held + GENERATIVE_FOOTPRINT.mb(rgb_mb)))
    assert estimated_memory_mb(4000, 3000, ["adjust", "change", "blur"]) == estimated_memory_mb(4000, 3000, ["change"])
    assert estimated_memory_mb(4000, 3000, []) == int(np.ceil(held + LOAD_AND_STORE.mb(rgb_mb)))


def test_a_command_the_table_does_not_know_counts_as_generative() -> None:
    assert estimated_memory_mb(2000, 2000, ["instruct"]) == estimated_memory_mb(2000, 2000, ["style"])
    assert estimated_memory_mb(2000, 2000, ["instruct"]) > estimated_memory_mb(2000, 2000, ["adjust"])


def test_the_estimate_grows_with_the_pixels() -> None:
    small, large = estimated_memory_mb(3000, 3000, ["blur"]), estimated_memory_mb(6300, 6300, ["blur"])

    assert 3 * small < large < 5 * small  # 4.4 times the pixels


def test_the_6300_square_png_of_38_kb_edits_within_the_default_limit_classically_but_not_under_a_small_one() -> None:
    limit = Settings.model_fields["max_job_memory_mb"].default

    assert check_memory(6300, 6300, ["recolor", "adjust", "blur", "remove"], limit) < 1024
    with pytest.raises(TooMuchMemory) as caught:
        check_memory(6300, 6300, ["change"], 1024)

    assert str(caught.value) == (f"This edit would need about {caught.value.needed_mb:,} MB for a 6300×6300 image; "
                                 "the limit is 1,024 MB (CHATEDIT_MAX_JOB_MEMORY_MB).")
    assert (caught.value.width, caught.value.height, caught.value.limit_mb) == (6300, 6300, 1024)
    assert isinstance(caught.value, ValueError)


def test_an_image_without_pixels_has_no_estimate() -> None:
    with pytest.raises(ValueError, match="at least 1×1"):
        estimated_memory_mb(0, 10, ["adjust"])


# --- the refusals ---------------------------------------------------------------------


def _photo() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8)


def test_an_edit_over_the_limit_is_refused_before_it_is_queued(services: Services, settings: Settings) -> None:
    stored = store_array(services, _photo())
    with services_with(settings, max_job_memory_mb=20) as small:
        with pytest.raises(InvalidEdit) as caught:
            submit_edit(small, EditRequest(image_id=stored.id, commands=ADJUST))

    needed = estimated_memory_mb(128, 96, ["adjust"])
    assert str(caught.value) == (f"This edit would need about {needed:,} MB for a 128×96 image; "
                                 "the limit is 20 MB (CHATEDIT_MAX_JOB_MEMORY_MB).")
    assert services.queue.counts() == {}


def test_the_worker_refuses_an_edit_over_its_own_limit_before_loading_the_pixels(
        services: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = store_array(services, _photo())
    job_id = submit_edit(services, EditRequest(image_id=stored.id, commands=ADJUST))

    def no_pixels(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the pixels were loaded")

    monkeypatch.setattr("jobs.handlers.edit.image_rgb", no_pixels)
    with services_with(settings, max_job_memory_mb=20) as worker_services, \
            running_worker(worker_services, lanes=["interactive", "gpu"]):
        job = services.queue.wait(job_id, timeout_s=60)

    assert job.status is JobStatus.FAILED
    assert job.error_message == (f"This edit would need about {estimated_memory_mb(128, 96, ['adjust']):,} MB for a "
                                 "128×96 image; the limit is 20 MB (CHATEDIT_MAX_JOB_MEMORY_MB).")
    assert job.attempts == 1


def test_an_image_stored_outside_the_shape_caps_is_refused_before_queueing(services: Services) -> None:
    """A 39-million-pixel line stored before the caps existed must not reach OpenCV (its feather alone would
    ask for 97 GB); a 25:1 image stands in for it here."""
    stored = store_array(services, np.zeros((40, 1000, 3), dtype=np.uint8))

    with pytest.raises(InvalidEdit) as caught:
        submit_edit(services, EditRequest(image_id=stored.id, commands=ADJUST))

    assert str(caught.value) == ("This image is 1,000 × 40 pixels, an aspect ratio of 25:1, over the 20:1 limit "
                                 "(CHATEDIT_MAX_ASPECT_RATIO); crop it closer to square and upload it again.")
    assert services.queue.counts() == {}


def test_the_worker_refuses_an_image_over_its_own_side_cap_before_loading_the_pixels(
        services: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = store_array(services, _photo())
    job_id = submit_edit(services, EditRequest(image_id=stored.id, commands=ADJUST))
    monkeypatch.setattr("jobs.handlers.edit.image_rgb", lambda *args, **kwargs: pytest.fail("the pixels were loaded"))

    with services_with(settings, max_image_side=100) as worker_services, \
            running_worker(worker_services, lanes=["interactive", "gpu"]):
        job = services.queue.wait(job_id, timeout_s=60)

    assert job.status is JobStatus.FAILED
    assert job.error_message == ("This image is 128 × 96 pixels and its longest side is over the 100 pixel limit "
                                 "(CHATEDIT_MAX_IMAGE_SIDE); scale it down and upload it again.")


# --- edits whose copies do not grow with the image ------------------------------------


def _scene(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    person = ((xx - width / 2) / (width * 0.22)) ** 2 + ((yy - height * 0.55) / (height * 0.35)) ** 2 <= 1.0
    return image, person


EDITS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "recolor": lambda image, person: classical.recolor(image, person, (0, 0, 128)),
    "recolor white": lambda image, person: classical.recolor(image, person, (255, 255, 255)),
    "adjust brightness, whole image": lambda image, person: classical.adjust(image, "brightness", 0.3),
    "adjust contrast": lambda image, person: classical.adjust(image, "contrast", 0.3, person),
    "adjust sharpness, whole image": lambda image, person: classical.adjust(image, "sharpness", 0.3),
    "blur the background": lambda image, person: classical.blur(image, ~person, 0.5),
    "blur, narrow": lambda image, person: classical.blur(image, ~person, 0.02),
    "remove": lambda image, person: classical.remove(image, person).image,
}


def _peak_bytes(edit: Callable[[np.ndarray, np.ndarray], np.ndarray], height: int, width: int) -> int:
    image, person = _scene(height, width)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        edit(image, person)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", list(EDITS))
def test_an_edit_grows_by_its_stated_multiple_of_the_image_not_by_dozens_of_float_copies(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strips and chunks have a fixed size (made small here, so these images span many of them): four
    times the pixels may cost the command's multiple in core.memory of the added RGB bytes, and a
    quarter more for the mask each call here builds itself (the job holds its masks apart)."""
    monkeypatch.setattr(classical, "_STRIP_PIXELS", 1 << 16)
    monkeypatch.setattr(classical, "_CHUNK_PIXELS", 1 << 12)
    small, large = _peak_bytes(EDITS[name], 480, 640), _peak_bytes(EDITS[name], 960, 1280)
    added_rgb = (960 * 1280 - 480 * 640) * 3
    multiple = COMMAND_FOOTPRINTS[name.split()[0].rstrip(",")].multiple + 0.25

    assert large - small <= multiple * added_rgb, f"{name}: {(large - small) / added_rgb:.1f}× the added RGB bytes"


@pytest.mark.parametrize("name", list(EDITS))
def test_strips_and_chunks_change_no_pixel(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    image, person = _scene(300, 410)
    whole = EDITS[name](image, person)
    monkeypatch.setattr(classical, "_STRIP_PIXELS", 3000)
    monkeypatch.setattr(classical, "_CHUNK_PIXELS", 501)

    pieces = EDITS[name](image, person)

    difference = np.abs(whole.astype(int) - pieces.astype(int))
    assert difference.max() <= (1 if name == "blur the background" else 0)
    assert np.count_nonzero(difference) <= 0.001 * difference.size
