"""The admin pages in a real browser: Datasets with a version of real seed rows, Evaluation with two runs compared,
Fine-tuning with a finished run of the tiny model (its loss curve, checkpoints and validity by step).

Screenshots `datasets.png`, `evaluation.png` and `finetune.png` (copied to docs/screenshots/ with
CHATEDIT_SAVE_SCREENSHOTS=1).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.settings import load_settings
from finetune.dataset_formats import read_rows
from jobs.queue import JobStatus
from jobs.services import Services, datasets, evaluations, training
from jobs.services.permissions import local_actor
from tests.browser_support import browser_page, keep_screenshots, serving, shot, wait_idle
from tests.finetune_support import MEMO_CONFIG, make_memo_dataset, save_tiny_base

pytestmark = pytest.mark.slow

SEED = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_chat_dataset.json"


def test_the_datasets_and_evaluation_pages_show_real_data(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    with serving(tmp_path) as (url, data_dir):
        services = Services.from_settings(load_settings(data_dir=data_dir))
        try:
            admin = local_actor(services)
            rows = read_rows(SEED, "seed").rows[:400]
            datasets.extend(services, admin, "seed", rows, note="Imported 400 rows of seed_chat_dataset.json",
                            split_seed=0)
            jobs = [evaluations.submit_run(services, admin, planner=p, dataset="seed", split="test")
                    for p in ("reference", "rules")]
            for job_id in jobs:  # the served app's worker runs them
                assert services.queue.wait(job_id, timeout_s=300).status is JobStatus.SUCCEEDED
        finally:
            services.close()

        with browser_page(shots) as page:
            page.goto(f"{url}/datasets")
            expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
            expect(page.get_by_text("seed@1").first).to_be_visible()
            wait_idle(page)
            shot(page, shots / "datasets.png")

            # Streamlit scrolls its main area itself: a tall window shows the comparison charts in one picture.
            page.set_viewport_size({"width": 1400, "height": 3000})
            page.goto(f"{url}/evaluation")
            expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
            expect(page.get_by_role("heading", name="Per command (F1)")).to_be_visible()
            wait_idle(page)
            shot(page, shots / "evaluation.png")
    keep_screenshots(shots)


def test_the_finetune_page_shows_a_finished_run(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    base = save_tiny_base(tmp_path / "tiny")
    with serving(tmp_path) as (url, data_dir):
        services = Services.from_settings(load_settings(data_dir=data_dir))
        try:
            admin = local_actor(services)
            spec = make_memo_dataset(services, admin)
            run = training.start_training(services, admin, base_model=str(base), dataset=spec, config=MEMO_CONFIG)
            assert run.job_id is not None
            # the served app's workers train it (gpu lane) and evaluate its checkpoints (batch lane)
            assert services.queue.wait(run.job_id, timeout_s=600).status is JobStatus.SUCCEEDED
            deadline = time.monotonic() + 600
            while True:
                points = training.checkpoints(services, admin, run.id)
                states = [e.status if e is not None else "queued" for p in points for e in p.evaluations.values()]
                if len(states) == 2 * len(points) and not {"queued", "running"} & set(states):
                    break
                assert time.monotonic() < deadline, f"checkpoint evaluations never ended: {states}"
                time.sleep(0.5)
            assert set(states) == {"succeeded"}
            training.register_planner(services, admin, points[-1].id, "tiny-memo-step12")
        finally:
            services.close()

        with browser_page(shots) as page:
            page.set_viewport_size({"width": 1400, "height": 2600})
            page.goto(f"{url}/finetune")
            expect(page.get_by_role("heading", name="Fine-tuning")).to_be_visible()
            expect(page.get_by_role("heading", name="Validity by step")).to_be_visible()
            expect(page.get_by_text(f"Run #{run.id} trained 12 steps")).to_be_visible()
            wait_idle(page)
            shot(page, shots / "finetune.png")
    keep_screenshots(shots)
