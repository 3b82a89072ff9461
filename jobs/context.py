"""What a handler gets: its job, the services, progress reporting and cooperative stopping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.errors import JobCancelled, LeaseLost, WorkerStopping
from jobs.images import encode_png
from jobs.queue import JobRecord

if TYPE_CHECKING:
    import numpy as np

    from jobs.services import Services

#: Job outputs named ``preview-<attempt>-<n>`` are the pictures of a job's work in progress, newest last.
PREVIEW_OUTPUT = "preview"


class Flag:
    """A switch one thread turns on and another reads. Nothing waits on it, so unlike
    ``threading.Event`` it needs no lock or condition (a worker makes one set per job)."""

    __slots__ = ("_on",)

    def __init__(self) -> None:
        self._on = False

    def set(self) -> None:
        self._on = True

    def is_set(self) -> bool:
        return self._on


@dataclass
class StopSignals:
    """Flags the worker sets for one running job; the handler reads them via the context."""

    cancel: Flag = field(default_factory=Flag)
    release: Flag = field(default_factory=Flag)
    lost: Flag = field(default_factory=Flag)


class JobContext:
    """The handler's view of its job.

    Progress writes are throttled (a diffusion loop may call ``progress`` at every step,
    many times a second); a cancel request is noticed at the next ``progress`` or ``check`` call,
    from the heartbeat, a progress write's answer or a PostgreSQL notification.
    """

    #: Minimum seconds between two progress writes (the first and the last always go through).
    progress_interval_s = 0.25
    #: Minimum seconds between two stored previews (the first always goes through).
    preview_interval_s = 1.0

    def __init__(self, job: JobRecord, services: Services, worker_id: str, signals: StopSignals | None = None) -> None:
        self.job = job
        self.services = services
        self.worker_id = worker_id
        self.signals = signals or StopSignals()
        self._last_progress_write = 0.0
        self._last_preview_write = 0.0
        self._previews = 0

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def should_stop(self) -> bool:
        """True once the handler ought to stop (for callbacks that cannot raise, e.g. a pipeline interrupt flag)."""
        s = self.signals
        return s.cancel.is_set() or s.release.is_set() or s.lost.is_set()

    def check(self) -> None:
        """Raise if the job must stop now: cancelled, handed back on shutdown, or lost."""
        if self.signals.lost.is_set():
            raise LeaseLost(self.job.id)
        if self.signals.cancel.is_set():
            raise JobCancelled(self.job.id)
        if self.signals.release.is_set():
            raise WorkerStopping(self.job.id)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is (0..1), then stop here if it must stop."""
        now = time.monotonic()
        if fraction >= 1.0 or self._last_progress_write == 0.0 or now - self._last_progress_write >= self.progress_interval_s:
            self._last_progress_write = now
            state = self.services.queue.report_progress(self.job.id, self.worker_id, fraction, message)
            if not state.owned:
                self.signals.lost.set()
            elif state.cancel_requested:
                self.signals.cancel.set()
        self.check()

    def save_output(self, name: str, data: bytes) -> str:
        """Store bytes as this job's output ``name``; idempotent when the job runs again."""
        key = self.services.blobs.put(data)
        self.services.queue.record_output(self.job.id, name, key, len(data))
        return key

    def preview(self, rgb: np.ndarray) -> None:
        """Store a rough picture of the work in progress for pages to show beside the progress bar.

        Each is a new output (outputs are written once), so pages show the newest; they are
        throttled like progress.
        """
        now = time.monotonic()
        if self._last_preview_write and now - self._last_preview_write < self.preview_interval_s:
            return
        self._last_preview_write = now
        self._previews += 1
        self.save_output(f"{PREVIEW_OUTPUT}-{self.attempt}-{self._previews}", encode_png(rgb))


def latest_preview_key(services: Services, job_id: int) -> str | None:
    """The blob key of a job's newest work-in-progress picture, or None when it stored none."""
    previews = [o for o in services.queue.outputs(job_id) if o.name.startswith(f"{PREVIEW_OUTPUT}-")]
    return previews[-1].blob_key if previews else None
