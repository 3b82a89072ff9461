"""Live previews of diffusion jobs: a cheap picture of the latents, stored while the job runs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.generative.executors import PREVIEW_SIDE, latent_preview, preview_size
from core.settings import Settings
from jobs.context import latest_preview_key
from jobs.edits import EditRequest, submit_edit
from jobs.handlers.generate import submit_generate
from jobs.images import store_array
from jobs.queue import JobStatus
from jobs.services import Services
from tests.conftest import running_worker
from tests.diffusion_support import FAST, TinyModels, generative_settings, photo


@pytest.fixture
def settings(tmp_path: Path, tiny_models: TinyModels) -> Settings:
    return generative_settings(tmp_path, tiny_models)


def _size(services: Services, key: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(services.blobs.get(key))) as image:
        return image.height, image.width


def test_the_preview_fits_in_256_pixels_and_is_never_enlarged() -> None:
    assert preview_size(1024, 768) == (PREVIEW_SIDE, 192)
    assert preview_size(512, 1024) == (128, PREVIEW_SIDE)
    assert preview_size(48, 64) == (48, 64)


def test_latents_become_a_rough_picture_in_their_colours() -> None:
    grey = latent_preview(torch.zeros(1, 4, 8, 8), (32, 32))
    assert grey.shape == (32, 32, 3) and grey.dtype == np.uint8 and np.all(np.abs(grey.astype(int) - 128) <= 1)
    latents = torch.zeros(1, 4, 8, 8)
    latents[0, 3] = 1.5  # the fourth SD channel pulls towards yellow (blue goes down most)
    yellowish = latent_preview(latents, (16, 16)).reshape(-1, 3).mean(axis=0)
    assert yellowish[2] < yellowish[0] - 50
    with pytest.raises(ValueError, match="batch, 4, h, w"):
        latent_preview(torch.zeros(1, 16, 8, 8), (8, 8))


def test_a_generate_job_stores_a_preview_of_the_working_size_while_it_runs(services: Services) -> None:
    job_id = submit_generate(services, "a lighthouse at dusk", user_settings={**FAST, "steps": 4, "width": 64,
                                                                             "height": 48})
    with running_worker(services, lanes=["gpu"]):
        job = services.queue.wait(job_id, timeout_s=120)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    key = latest_preview_key(services, job_id)
    assert key is not None and _size(services, key) == (48, 64)
    assert "image" in {o.name for o in services.queue.outputs(job_id)}


def test_an_edit_job_with_a_diffusion_command_stores_a_preview_too(services: Services) -> None:
    stored = store_array(services, photo())
    job_id = submit_edit(services, EditRequest(image_id=stored.id, user_settings={**FAST, "steps": 3},
                                               commands=[{"command": "instruct", "paras": ["make it snow"]}]))
    with running_worker(services, lanes=["gpu"]):
        job = services.queue.wait(job_id, timeout_s=120)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    key = latest_preview_key(services, job_id)
    assert key is not None and _size(services, key) == (48, 64)


def test_a_classical_edit_stores_no_preview(services: Services) -> None:
    stored = store_array(services, photo())
    job_id = submit_edit(services, EditRequest(image_id=stored.id,
                                               commands=[{"command": "adjust", "paras": ["brightness", 0.3, []]}]))
    with running_worker(services, lanes=["interactive", "gpu"]):
        assert services.queue.wait(job_id, timeout_s=60).status is JobStatus.SUCCEEDED
    assert latest_preview_key(services, job_id) is None
