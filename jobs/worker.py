"""The worker: claims jobs of its lanes, runs their handlers, and settles them.

Threads: N slots (``--concurrency``) that claim and run jobs, one heartbeat thread
(renews leases, notices cancel requests, reaps jobs of dead workers, reports this
worker for the Status page) and one waker (PostgreSQL LISTEN, or SQLite's
``data_version`` for commits by other processes) so idle slots start a new job within
milliseconds instead of at the next poll.

Short jobs come in batches: a slot claims as many as it expects to finish within
``CHATEDIT_WORKER_BATCH_WINDOW_SECONDS`` (judged by recent run times, so second-long GPU
jobs are claimed one at a time) and writes their completions together with its next
claim, one round trip per batch. A job of a kind not known to be quick settles what is
finished and hands the rest of its batch back before it starts, so nothing waits behind it.

SIGTERM/SIGINT: stop claiming, hand back claimed jobs not yet started, let running jobs
finish for the grace period, then ask them to stop and hand them back to the queue; a
second signal hands them back at once.

Each kind has a maximum run time (:meth:`jobs.registry.HandlerRegistry.max_run_s`). A
job past it is failed for good and its handler told to stop (as if its lease were lost);
a handler that still runs a lease later is stuck where Python cannot interrupt it, so the
worker stops claiming, finishes what it can and exits with :data:`EXIT_REPLACE_ME`: a
fresh process (``chatedit serve`` restarts it, as would systemd) serves the lanes again,
instead of a worker that heartbeats with a slot that never frees.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from core.settings import LANES
from core.text import check_json
from jobs.context import JobContext, StopSignals
from jobs.errors import InvalidJobRequest, JobCancelled, LeaseLost, WorkerStopping
from jobs.queue import CANCEL_PREFIX, NOTIFY_CHANNEL, ErrorInfo, JobRecord, JobStatus
from jobs.registry import HandlerRegistry
from jobs.services import Services

log = logging.getLogger("chatedit.worker")

_SQLITE_WATCH_INTERVAL_S = 0.005
#: Most jobs a slot claims in one statement.
MAX_BATCH = 32
#: Weight of the latest run time in the running mean that sizes batches (a slow job counts at once).
_RUN_TIME_WEIGHT = 0.2
#: The exit code of a worker that stopped because a handler would not stop: restart it.
EXIT_REPLACE_ME = 3


def _running_mean(mean: float | None, sample: float) -> float:
    return sample if mean is None else mean + _RUN_TIME_WEIGHT * (sample - mean)


@dataclass
class _Finished:
    """A job that succeeded and waits to be written as such together with its batch."""

    job: JobRecord
    result: dict[str, Any] | None
    run_ms: float
    finished_at: float  # perf_counter


@dataclass
class _Slot:
    """One slot's jobs between claim and settle: claimed in a batch but not started, and finished."""

    claimed: deque[JobRecord] = field(default_factory=deque)
    finished: list[_Finished] = field(default_factory=list)


class Wakeup:
    """A generation counter: a slot takes a token, looks for work, and sleeps only if nothing changed since."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def token(self) -> int:
        with self._cond:
            return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, token: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._generation != token, timeout)


def detect_gpu_name() -> str | None:
    """The first GPU's name via nvidia-smi (the worker must not import torch just to say this)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def parse_lanes(text: str | Sequence[str]) -> list[str]:
    lanes = [part.strip() for part in (text.split(",") if isinstance(text, str) else text) if part.strip()]
    unknown = [lane for lane in lanes if lane not in LANES]
    if unknown or not lanes:
        raise InvalidJobRequest(f"Unknown lane(s) {', '.join(unknown) or '(none given)'}; use {', '.join(LANES)}.",
                                lanes=lanes)
    return list(dict.fromkeys(lanes))


class Worker:
    def __init__(
        self,
        services: Services,
        *,
        lanes: Sequence[str] = LANES,
        concurrency: int = 1,
        registry: HandlerRegistry | None = None,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise InvalidJobRequest("concurrency must be at least 1.", concurrency=concurrency)
        s = services.settings
        self.services = services
        self.queue = services.queue
        self.lanes = parse_lanes(lanes)
        self.concurrency = concurrency
        self.registry = registry or HandlerRegistry()
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s = s.job_lease_seconds
        # Renew well before the lease runs out, whatever the settings say.
        self.heartbeat_s = min(s.worker_heartbeat_seconds, s.job_lease_seconds / 3)
        self.poll_s = s.worker_poll_seconds
        self.grace_s = s.worker_shutdown_grace_seconds
        self._stop = threading.Event()
        self._force = threading.Event()
        self._last_signal_at = float("-inf")
        self._wakeup = Wakeup()
        self.batch_window_s = s.worker_batch_window_seconds
        self._mean_run_s: float | None = None
        self._kind_mean_s: dict[str, float] = {}
        #: Jobs this worker holds a lease on: claimed (perhaps not started), running, or finished but not settled.
        self._running: dict[int, StopSignals] = {}
        #: Jobs whose handler runs now: when it started (monotonic), the job and its signals.
        self._started: dict[int, tuple[float, JobRecord, StopSignals]] = {}
        #: Set when a handler ignored the stop past its limit: this process must be replaced.
        self.stuck = threading.Event()
        self._slots: list[_Slot] = []
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.jobs_done = 0

    # ------------------------------------------------------------------ lifecycle

    def run(self, *, install_signal_handlers: bool = True) -> int:
        """Run until stopped; returns the process exit code (0 after a clean stop)."""
        if install_signal_handlers:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        self.start()
        try:
            while not self._stop.is_set():
                self._stop.wait(0.5)
        finally:
            clean = self.shutdown()
        if self.stuck.is_set():
            return EXIT_REPLACE_ME
        return 0 if clean else 1

    def start(self) -> None:
        self.queue.register_worker(self.id, host=socket.gethostname(), pid=os.getpid(), lanes=self.lanes,
                                   concurrency=self.concurrency, gpu_name=detect_gpu_name())
        log.info("worker %s started: lanes=%s concurrency=%d database=%s", self.id, ",".join(self.lanes),
                 self.concurrency, self.services.database)
        self._spawn(self._heartbeat_loop, "heartbeat")
        self._spawn(self._watch_database, "waker")
        for n in range(self.concurrency):
            self._spawn(self._slot_loop, f"slot-{n}")

    def request_stop(self) -> None:
        """Stop claiming new jobs; a second call hands running jobs back at once."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()
        self._wakeup.notify()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        now = time.monotonic()
        if now - self._last_signal_at < 1.0:
            return  # one Ctrl-C often arrives twice (to the process and to its group)
        self._last_signal_at = now
        log.info("worker %s got %s: %s", self.id, signal.Signals(signum).name,
                 "handing running jobs back now" if self._stop.is_set() else
                 f"finishing running jobs (up to {self.grace_s:g} s), claiming no more")
        self.request_stop()

    def shutdown(self) -> bool:
        """Finish or hand back running jobs, then mark this worker stopped. True if every slot ended."""
        self._stop.set()
        self._wakeup.notify()
        slots = [t for t in self._threads if t.name.startswith("slot-")]
        deadline = time.monotonic() + self.grace_s
        while any(t.is_alive() for t in slots) and time.monotonic() < deadline and not self._force.is_set():
            time.sleep(0.05)
        if any(t.is_alive() for t in slots):
            with self._running_lock:
                for signals in self._running.values():
                    signals.release.set()
            for t in slots:
                t.join(timeout=5.0)
        clean = not any(t.is_alive() for t in slots)
        if not clean:
            # A handler that ignores its stop signal: settle what its slot finished, and take the
            # rest back so another worker can run it.
            with self._running_lock:
                slots = list(self._slots)
            for slot in slots:
                self._settle(slot, lanes=())
            with self._running_lock:
                stuck = list(self._running)
            for job_id in self.queue.release(stuck, self.id):
                log.warning("job %d did not stop in time; handed back to the queue", job_id)
        for t in self._threads:
            if not t.name.startswith("slot-"):
                t.join(timeout=2.0)
        try:
            self.queue.worker_stopped(self.id)
        except DBAPIError:
            log.exception("could not mark worker %s stopped", self.id)
        log.info("worker %s stopped after %d job(s)", self.id, self.jobs_done)
        return clean

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------------ slots

    def _batch_size(self) -> int:
        """How many jobs a slot claims at once: as many as it expects to finish within the batch window.

        Judged by recent run times, so a lane of second-long jobs (GPU) always claims one
        and never holds a job another worker could start now, while a stream of
        millisecond jobs pays one database round trip per batch instead of one per job.
        """
        mean = self._mean_run_s
        if self.batch_window_s <= 0 or mean is None:
            return 1
        return max(1, min(MAX_BATCH, int(self.batch_window_s / max(mean, 1e-6))))

    def _expected_run_s(self, kind: str) -> float:
        """How long a job of this kind took here lately (infinite for a kind not yet seen)."""
        return self._kind_mean_s.get(kind, float("inf"))

    def _slot_loop(self) -> None:
        slot = _Slot()
        with self._running_lock:
            self._slots.append(slot)
        failures = 0
        while True:
            if not slot.claimed:
                if self._stop.is_set():
                    self._settle(slot, lanes=())
                    return
                token = self._wakeup.token()
                try:
                    claimed = self._settle(slot, lanes=self.lanes, limit=self._batch_size())
                    failures = 0
                except DBAPIError as exc:
                    failures += 1
                    log.warning("claim failed (%s); retrying", exc.__class__.__name__)
                    self._stop.wait(min(5.0, 0.1 * 2**failures))
                    continue
                if not claimed:
                    self._wakeup.wait(token, self._idle_wait_s())
                continue
            if self._stop.is_set():
                # Claimed in a batch but not started: hand them back for another worker.
                self._hand_back(list(slot.claimed))
                slot.claimed.clear()
                continue
            if self._expected_run_s(slot.claimed[0].kind) > self.batch_window_s:
                # A job that may take long: settle what is finished and hand back the jobs
                # queued behind it in this batch, so neither waits for it.
                self._settle(slot, lanes=())
                self._hand_back([slot.claimed.pop() for _ in range(len(slot.claimed) - 1)][::-1])
            self._run(slot.claimed.popleft(), slot)
            if slot.finished and time.perf_counter() - slot.finished[0].finished_at >= self.batch_window_s:
                self._settle(slot, lanes=())

    def _settle(self, slot: _Slot, *, lanes: Sequence[str], limit: int = 1) -> list[JobRecord]:
        """Write the slot's finished jobs as succeeded and, with ``lanes``, claim its next batch (one round trip)."""
        finished = list(slot.finished)
        if not finished and not lanes:
            return []
        try:
            won, claimed = self.queue.settle_and_claim(
                self.id, {f.job.id: f.result for f in finished}, lanes=lanes, lease_s=self.lease_s, limit=limit
            )
        except DBAPIError:
            if lanes:
                raise
            # The database is unreachable: the leases will expire and the reaper queues these jobs again.
            won, claimed = frozenset(), []
        del slot.finished[: len(finished)]
        with self._running_lock:
            for f in finished:
                self._running.pop(f.job.id, None)
            for job in claimed:
                self._running[job.id] = StopSignals()
        for f in finished:
            self._log_job(f.job, "succeeded" if f.job.id in won else "finished, but the lease was lost", f.run_ms)
        slot.claimed.extend(claimed)
        return claimed

    def _hand_back(self, jobs: list[JobRecord]) -> None:
        if not jobs:
            return
        ids = [job.id for job in jobs]
        try:
            released = set(self.queue.release(ids, self.id))
        except DBAPIError:
            released = set()
        with self._running_lock:
            for job_id in ids:
                self._running.pop(job_id, None)
        for job in jobs:
            self._log_job(job, "handed back unstarted" if job.id in released else "not started; lease left to expire",
                          0.0)

    def _idle_wait_s(self) -> float:
        try:
            due = self.queue.next_due(self.lanes)
        except DBAPIError:
            return self.poll_s
        if due is None:
            return self.poll_s
        return max(0.0, min(self.poll_s, (due - self.queue.clock()).total_seconds()))

    def _run(self, job: JobRecord, slot: _Slot) -> None:
        """Run one job. Success waits in the slot to be settled with its batch; any other outcome is settled now."""
        with self._running_lock:
            signals = self._running[job.id]  # registered when it was claimed
        ctx = JobContext(job, self.services, self.id, signals)
        started = time.perf_counter()
        with self._running_lock:
            self._started[job.id] = (time.monotonic(), job, signals)
        outcome: str | None
        try:
            outcome, result = self._execute(job, ctx)
        except DBAPIError as exc:
            # Settling failed (database gone?). The lease will expire and the reaper re-queues the job.
            outcome = f"unsettled ({exc.__class__.__name__}; the lease will expire and it runs again)"
        finally:
            self.jobs_done += 1
            with self._running_lock:
                self._started.pop(job.id, None)
        ended = time.perf_counter()
        run_s = ended - started
        self._mean_run_s = _running_mean(self._mean_run_s, run_s)
        self._kind_mean_s[job.kind] = _running_mean(self._kind_mean_s.get(job.kind), run_s)
        if outcome is None:
            slot.finished.append(_Finished(job, result, run_s * 1000, ended))
            return
        with self._running_lock:
            self._running.pop(job.id, None)
        self._log_job(job, outcome, run_s * 1000)

    def _log_job(self, job: JobRecord, outcome: str, run_ms: float) -> None:
        waited_ms = max(0.0, (job.started_at - max(job.created_at, job.run_after)).total_seconds() * 1000) \
            if job.started_at else 0.0
        log.info("job %d %s [%s] owner=%d attempt %d/%d -> %s (ran %.1f ms, waited %.1f ms)", job.id, job.kind,
                 job.lane, job.owner_id, job.attempts, job.max_attempts, outcome, run_ms, waited_ms)

    def _execute(self, job: JobRecord, ctx: JobContext) -> tuple[str | None, dict[str, Any] | None]:
        """Run the handler; returns (None, result) on success, else (outcome, None) once settled."""
        try:
            handler = self.registry.resolve(job.kind)
            ctx.check()
            result = handler(ctx)
            if result is not None and not isinstance(result, dict):
                result = {"value": result}
            # A result the database cannot store (a NUL, NaN) fails its job here, not the batch's settle.
            check_json(result, f"the {job.kind} job's result")
        except JobCancelled:
            return ("cancelled" if self.queue.mark_cancelled(job.id, self.id) else "cancelled (already settled)"), None
        except WorkerStopping:
            return ("handed back" if self.queue.release(job.id, self.id) else "handed back (already settled)"), None
        except LeaseLost:
            return "abandoned (lease lost to the reaper)", None
        except Exception as exc:  # noqa: BLE001 - any handler failure is recorded on the job
            retryable = self.queue.policy.is_retryable(exc)
            status = self.queue.fail(job, self.id, ErrorInfo.from_exception(exc), retryable=retryable)
            if status is JobStatus.QUEUED:
                return f"failed ({type(exc).__name__}: {exc}); queued for retry", None
            if status is None:
                return f"failed ({type(exc).__name__}); lease already lost", None
            return f"{status.value} ({type(exc).__name__}: {exc})", None
        return None, result

    # ------------------------------------------------------------------ heartbeat, reaper, waker

    def _heartbeat_loop(self) -> None:
        while True:
            if self._stop.is_set():
                if not self._has_running():
                    return
                time.sleep(min(self.heartbeat_s, 0.5))  # keep leases alive while jobs finish
            elif self._stop.wait(self.heartbeat_s):
                continue
            try:
                self._heartbeat_once()
            except DBAPIError as exc:
                log.warning("heartbeat failed (%s)", exc.__class__.__name__)

    def _has_running(self) -> bool:
        with self._running_lock:
            return bool(self._running)

    def _heartbeat_once(self) -> None:
        with self._running_lock:
            running = dict(self._running)
        states = self.queue.renew_leases(self.id, list(running), lease_s=self.lease_s)
        for job_id, state in states.items():
            signals = running[job_id]
            if not state.owned:
                signals.lost.set()
            elif state.cancel_requested:
                signals.cancel.set()
        self.queue.worker_heartbeat(self.id, list(running))
        self._stop_overtime()
        report = self.queue.reap_expired()
        if report.total:
            log.warning("reaped jobs of silent workers: %d re-queued, %d failed, %d cancelled",
                        report.requeued, report.failed, report.cancelled)
            self._wakeup.notify()

    def _stop_overtime(self) -> None:
        """Fail jobs past their kind's maximum run time; ask for a new process if one ignores that for a lease."""
        now = time.monotonic()
        with self._running_lock:
            started = list(self._started.values())
        for since, job, signals in started:
            limit = self.registry.max_run_s(job.kind)
            over_s = now - since - limit
            if over_s < 0:
                continue
            if not signals.lost.is_set():
                message = (f"The {job.kind} job ran longer than its limit of {limit:g} s and was stopped; "
                           "it is not retried.")
                status = self.queue.fail(job, self.id, ErrorInfo("JobTimedOut", message), retryable=False)
                signals.lost.set()  # the job is no longer this worker's to settle
                log.warning("job %d %s ran past its %g s limit: %s", job.id, job.kind, limit,
                            "failed" if status is not None else "already settled")
            elif over_s > self.lease_s and not self.stuck.is_set():
                log.error("job %d %s ignored its stop for %.0f s; this worker stops claiming and exits with code %d "
                          "so that a fresh process replaces it", job.id, job.kind, over_s, EXIT_REPLACE_ME)
                self.stuck.set()
                self.request_stop()

    def _watch_database(self) -> None:
        database = self.services.database
        watch = self._listen_postgres if database.is_postgres else self._watch_sqlite
        while not self._stop.is_set():
            try:
                watch()
            except Exception as exc:  # noqa: BLE001 - the waker is an optimisation; polling still works
                log.warning("job wake-ups unavailable (%s: %s); polling every %.1f s", type(exc).__name__, exc,
                            self.poll_s)
                self._stop.wait(5.0)

    def _listen_postgres(self) -> None:
        import psycopg  # only on PostgreSQL deployments

        url = make_url(self.services.database.url).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True,
                             connect_timeout=max(2, math.ceil(self.services.database.connect_timeout_s))) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            while not self._stop.is_set():
                for note in conn.notifies(timeout=0.5):
                    self._on_notification(note.payload)

    def _on_notification(self, payload: str) -> None:
        if payload.startswith(CANCEL_PREFIX):
            with self._running_lock:
                signals = self._running.get(int(payload[len(CANCEL_PREFIX):]))
            if signals is not None:
                signals.cancel.set()
        elif payload in self.lanes:
            self._wakeup.notify()

    def _watch_sqlite(self) -> None:
        path = make_url(self.services.database.url).database
        conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while not self._stop.is_set():
                time.sleep(_SQLITE_WATCH_INTERVAL_S)
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    self._wakeup.notify()
        finally:
            conn.close()

