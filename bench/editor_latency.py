"""Editor latency at 12 megapixels against the same photo at 1 megapixel, in one run.

Usage (from the repository root)::

    .venv/bin/python bench/editor_latency.py [--repeats 5] [--json PATH]

The photo is a real one (the astronaut portrait: ``tests.real_assets.astronaut_rgb()`` when
that module exists, else ``/tmp/astronaut.png``) scaled up to 4000×3000 and given grain at
three scales, so its JPEG and PNG sizes are those of a phone photo rather than of a smooth
upscale; the 1 MP photo is the same picture at 1155×866. For each size it times:

- **store**: cleaning and storing the upload (``jobs.images.store_upload``, fresh database);
- **first view**: the editor's first run on the new history (previews and working copy made);
- **chat rerun**: the editor's rerun after a chat message (the rule planner answers at once);
- **click rerun**: the rerun after a click with "Similar colour" (a flood fill on the image);
- **Run all → Cancel**: the rerun after pressing Run all, which shows the progress bar and Cancel;
- **edit job**: four ``adjust`` commands through a worker already waiting, submit → stored result.

The app is driven by ``streamlit.testing`` (AppTest) in this process, as the tests do. Each
figure is the median of ``--repeats`` runs; the 12 MP figure is printed beside the 1 MP one
and their ratio, which is what the target is about (a 12 MP rerun within 1.5× a 1 MP
rerun). The benchmark only reports; it never fails on a target.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.settings import Settings, load_settings
from db.migrate import upgrade
from jobs.edits import EditRequest, submit_edit
from jobs.histories import start_history
from jobs.images import store_upload
from jobs.services import Services
from jobs.worker import Worker

ENTRY = str(ROOT / "app" / "streamlit_app.py")
SIZES = {"12 MP": (4000, 3000), "1 MP": (1155, 866)}
FOUR_ADJUSTS = [
    {"command": "adjust", "paras": ["brightness", 0.2, []]},
    {"command": "adjust", "paras": ["contrast", 0.2, []]},
    {"command": "adjust", "paras": ["saturation", 0.2, []]},
    {"command": "adjust", "paras": ["warmth", 0.2, []]},
]


# ---------------------------------------------------------------- the photo


def source_portrait() -> np.ndarray:
    """The astronaut portrait as RGB uint8: the tests' real asset when it can be had, else ``/tmp/astronaut.png``."""
    try:
        from tests.real_assets import astronaut_rgb

        return np.asarray(astronaut_rgb())
    except ImportError:
        pass
    except BaseException as exc:  # pytest's skip (the registry cannot be reached) is not an Exception
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
    path = Path("/tmp/astronaut.png")
    if not path.exists():
        raise SystemExit("No real photo: tests.real_assets cannot fetch the astronaut and /tmp/astronaut.png is missing.")
    return np.asarray(Image.open(path).convert("RGB"))


def realistic_photo(source: np.ndarray, width: int, height: int, seed: int = 0) -> np.ndarray:
    """``source`` scaled and cropped to width × height, with grain at three scales like a camera's."""
    side = max(width, height)
    square = cv2.resize(source, (side, side), interpolation=cv2.INTER_CUBIC)
    top, left = (side - height) // 2, (side - width) // 2
    image = square[top:top + height, left:left + width].astype(np.float32)
    rng = np.random.default_rng(seed)
    for scale, amplitude in ((1, 5.0), (3, 4.0), (9, 3.0)):
        grain = rng.normal(0.0, amplitude, (height // scale + 1, width // scale + 1)).astype(np.float32)
        grain = cv2.resize(grain, (width, height), interpolation=cv2.INTER_LINEAR) if scale > 1 else grain[:height, :width]
        image += grain[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def as_jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ---------------------------------------------------------------- harness


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def settings_at(root: Path) -> Settings:
    return load_settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'chatedit.db'}",
                         worker_poll_seconds=0.05, worker_heartbeat_seconds=0.5)


@contextmanager
def installation(root: Path) -> Iterator[Services]:
    """A fresh SQLite installation under ``root``; the app (which reads the environment) shares it."""
    settings = settings_at(root)
    services = Services.from_settings(settings)
    upgrade(services.database)
    os.environ["CHATEDIT_DATA_DIR"] = str(settings.data_dir)
    os.environ["CHATEDIT_DATABASE_URL"] = settings.resolved_database_url
    try:
        yield services
    finally:
        services.close()


def time_store(upload: bytes) -> float:
    """Cleaning and storing the upload into a fresh database (so nothing is de-duplicated)."""
    with tempfile.TemporaryDirectory() as tmp:
        services = Services.from_settings(settings_at(Path(tmp)))
        upgrade(services.database)
        try:
            return timed(lambda: store_upload(services, upload))
        finally:
            services.close()


def _checked(at: Any) -> None:
    if at.exception:
        raise RuntimeError(f"the editor raised: {at.exception}")


class Editor:
    """One editor session (AppTest) on a new history of one photo, and the reruns it times."""

    def __init__(self, services: Services, upload: bytes) -> None:
        from streamlit.testing.v1 import AppTest

        self.services = services
        history_id = start_history(services, store_upload(services, upload).id, title="bench").history_id
        self.at = AppTest.from_file(ENTRY, default_timeout=120)
        self.at.query_params["history"] = str(history_id)
        self.messages = 0
        self.clicks = 0

    def first_view(self) -> float:
        elapsed = timed(self.at.run)
        _checked(self.at)
        return elapsed

    def chat(self) -> float:
        self.messages += 1
        prompt = self.at.chat_input(key="chat_prompt").set_value(f"make it a bit brighter ({self.messages})")
        elapsed = timed(prompt.run)
        _checked(self.at)
        return elapsed

    def click(self) -> float:
        """A click with "Similar colour" on the background (a point as the page keeps it), then Clear (not timed)."""
        at = self.at
        if at.radio(key="mask_tool").value != "Click to select":
            at.radio(key="mask_tool").set_value("Click to select").run()
            at.radio(key="click_method").set_value("Similar colour").run()
        self.clicks += 1
        at.session_state["click_point"] = (100 + 7 * self.clicks, 120 + 5 * self.clicks)
        elapsed = timed(at.run)
        _checked(at)
        at.button(key="clear_selection").click().run()
        return elapsed

    def run_all_until_cancel_shows(self) -> float:
        """Run all (no worker: the job waits), timed until the page shows Cancel; then cancel it (not timed)."""
        at = self.at
        elapsed = timed(at.button(key="run_all").click().run)
        _checked(at)
        job_id = at.session_state["job_id"]
        if not any(b.key == f"cancel_{job_id}" for b in at.button):
            raise RuntimeError("Run all did not show a Cancel button")
        self.services.queue.cancel(job_id)
        for _ in range(20):  # the running-job fragment notices the cancel and the page shows the notice
            at.run()
            if "job_id" not in at.session_state:
                break
        return elapsed


def edit_job(services: Services, image_id: int, amount: float) -> tuple[float, dict[str, float]]:
    """Four adjusts through the waiting worker: submit → stored result, and the job's own split."""
    commands = [dict(c, paras=[c["paras"][0], amount, []]) for c in FOUR_ADJUSTS]
    started = time.perf_counter()
    job_id = submit_edit(services, EditRequest(image_id=image_id, commands=commands))
    job = services.queue.wait(job_id, timeout_s=600)
    elapsed = time.perf_counter() - started
    if job.status.value != "succeeded":
        raise RuntimeError(f"the edit job {job.status.value}: {job.error_message}")
    return elapsed, {name: float(value) for name, value in (job.result or {}).get("timings", {}).items()}


# ---------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median reported)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    source = source_portrait()
    uploads = {name: as_jpeg(realistic_photo(source, w, h)) for name, (w, h) in SIZES.items()}
    for name, (width, height) in SIZES.items():
        print(f"{name}: {width}×{height}, JPEG {len(uploads[name]) / 1e6:.1f} MB", flush=True)
    # The sizes take turns in every step, so both meet the same load on a shared machine.
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in SIZES}
    splits: dict[str, dict[str, list[float]]] = {name: {} for name in SIZES}

    def record(name: str, metric: str, value: float) -> None:
        samples[name].setdefault(metric, []).append(value)

    for _ in range(args.repeats):
        for name in SIZES:
            record(name, "store", time_store(uploads[name]))
    with tempfile.TemporaryDirectory() as tmp, installation(Path(tmp)) as services:
        editors = {name: Editor(services, uploads[name]) for name in SIZES}
        for name, editor in editors.items():
            record(name, "first view", editor.first_view())
        steps = {"chat rerun": Editor.chat, "click rerun": Editor.click,
                 "Run all → Cancel shown": Editor.run_all_until_cancel_shows}
        for metric, step in steps.items():
            for _ in range(args.repeats):
                for name, editor in editors.items():
                    record(name, metric, step(editor))
        image_ids = {name: store_upload(services, uploads[name]).id for name in SIZES}
        worker = Worker(services, lanes=["interactive", "gpu"])
        worker.start()
        try:
            for name in SIZES:
                edit_job(services, image_ids[name], 0.05)  # warms the worker (imports, caches)
            for i in range(args.repeats):
                for name in SIZES:
                    elapsed, split = edit_job(services, image_ids[name], round(0.1 + 0.01 * i, 2))
                    record(name, "edit job (4 adjusts)", elapsed)
                    for part, value in split.items():
                        splits[name].setdefault(part, []).append(value)
        finally:
            worker.shutdown()

    results = {name: {metric: median_of(values) for metric, values in figures.items()}
               for name, figures in samples.items()}
    big, small = results["12 MP"], results["1 MP"]
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"medians of {args.repeats} runs")
    print(f"{'':28}{'12 MP':>10}{'1 MP':>10}{'ratio':>8}")
    for metric in big:
        print(f"{metric:28}{big[metric] * 1000:>8.0f}ms{small[metric] * 1000:>8.0f}ms"
              f"{big[metric] / small[metric]:>7.2f}×")
    split_medians = {name: {part: median_of(values) for part, values in parts.items()}
                     for name, parts in splits.items()}
    print("\nedit job split (median, ms):")
    for name, split in split_medians.items():
        print(f"  {name}: " + ", ".join(f"{part} {value * 1000:.0f}" for part, value in split.items()))
    if args.json:
        args.json.write_text(json.dumps({"repeats": args.repeats, "results": results, "samples": samples,
                                         "edit_job_split": split_medians}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
