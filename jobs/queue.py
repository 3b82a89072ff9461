"""The job queue: the only module that speaks SQL about jobs, workers and job outputs.

Delivery is at-least-once. A worker claims a job with a lease and renews it while it
runs; the reaper puts jobs whose lease ran out back in the queue, so a job may run
twice and handlers write their outputs keyed by job id. Every status change is guarded
by the status it expects (and, for running jobs, by the lease owner), so each method
returns whether *this* caller won, and a terminal status is never left (a database
trigger enforces that too).

Claim order within a lane: priority (higher first), then fair rank (round-robin across
owners), then age. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` and wakes workers
with NOTIFY; SQLite runs the same claim inside ``BEGIN IMMEDIATE``.

Fair use: an enqueue may not leave one owner with more than ``max_queued_per_owner`` queued
jobs. It counts them while holding a lock on the owner (PostgreSQL: a transaction-level
advisory lock; SQLite: the write lock of ``BEGIN IMMEDIATE``), so two enqueues racing for the
last place cannot both take it. Only an enqueue is refused: a worker's retry, a job handed
back at shutdown and the reaper's re-queue put an existing job back in the queue (where it
counts again) and are never refused.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from core.text import UnsafeText, check_json, clean_text
from db.engine import Database
from db.models import JOB_LANES, LOCAL_USER_ID, Job, JobOutput, WorkerRecord
from db.types import UTCDateTime, utcnow
from jobs.errors import InvalidJobRequest, JobNotFound, PermanentError, RetryableError, TooManyQueuedJobs
from jobs.registry import check_payload

NOTIFY_CHANNEL = "chatedit_jobs"
CANCEL_PREFIX = "cancel:"
#: Job priorities people and pages may use (the column holds far more; nothing needs it).
PRIORITY_RANGE = (-1000, 1000)
MAX_ATTEMPTS_LIMIT = 1000
_INT32_MAX = 2**31 - 1
#: The first key of the PostgreSQL advisory lock an enqueue holds per owner (the second is the owner's id);
#: two-key advisory locks never collide with the one-key lock of the migrations.
_OWNER_LOCK_SPACE = 0x43455155

jobs_t: sa.Table = Job.__table__  # type: ignore[assignment]
outputs_t: sa.Table = JobOutput.__table__  # type: ignore[assignment]
workers_t: sa.Table = WorkerRecord.__table__  # type: ignore[assignment]
c = jobs_t.c


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True)
class JobRecord:
    """A job as read from the database (a snapshot; re-read to see later changes)."""

    id: int
    kind: str
    lane: str
    payload: dict[str, Any]
    priority: int
    owner_id: int
    status: JobStatus
    attempts: int
    max_attempts: int
    run_after: datetime
    fair_rank: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    progress: float
    progress_message: str | None
    result: dict[str, Any] | None
    error_type: str | None
    error_message: str | None
    error_traceback: str | None
    retry_of: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: sa.Row[Any] | dict[str, Any]) -> JobRecord:
        data = dict(row) if isinstance(row, dict) else dict(row._mapping)
        data["status"] = JobStatus(data["status"])
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**data)

    @property
    def terminal(self) -> bool:
        return self.status.terminal


_JOB_COLUMNS = [jobs_t.c[f.name] for f in JobRecord.__dataclass_fields__.values()]
#: What an enqueue writes besides the fair rank (the rest stays NULL until the job runs).
_ENQUEUE_COLUMNS = [jobs_t.c[name] for name in (
    "kind", "lane", "payload", "priority", "owner_id", "status", "attempts", "max_attempts", "run_after",
    "cancel_requested", "progress", "created_at", "updated_at", "retry_of",
)]


@dataclass(frozen=True)
class ErrorInfo:
    """What went wrong in a job, as stored in its row."""

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        tb = "".join(traceback.format_exception(exc))
        # An exception's text may quote its input, NUL bytes and all; the row must still be writable.
        return cls(type=type(exc).__name__, message=clean_text(str(exc)) or type(exc).__name__,
                   traceback=clean_text(tb))


@dataclass(frozen=True)
class JobSpec:
    """What to run: everything :meth:`JobQueue.enqueue_many` needs for one job."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    lane: str = "interactive"
    priority: int = 0
    owner_id: int = LOCAL_USER_ID
    max_attempts: int | None = None
    run_after: datetime | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed attempt is tried again, and after how long.

    Exponential backoff with jitter, for errors that may pass on their own; anything
    else (including a plain bug) fails the job at once rather than repeating it.
    """

    base_delay_s: float = 2.0
    factor: float = 2.0
    max_delay_s: float = 300.0
    jitter: float = 0.25
    #: ``OperationalError``: the database went away (a server restart, a dropped connection) or was busy.
    retry_on: tuple[type[BaseException], ...] = (RetryableError, ConnectionError, TimeoutError,
                                                 sa.exc.OperationalError)
    never_retry: tuple[type[BaseException], ...] = (PermanentError,)

    def is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.never_retry)

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before attempt ``attempt + 1``, after ``attempt`` failed (1-based)."""
        base = min(self.max_delay_s, self.base_delay_s * self.factor ** max(0, attempt - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1.0 + spread))


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"  # it was queued and is now cancelled
    REQUESTED = "requested"  # it is running; the handler will see the request and stop
    ALREADY_FINISHED = "already_finished"


@dataclass(frozen=True)
class LeaseState:
    """A running job as its worker sees it after a heartbeat or progress report."""

    owned: bool
    cancel_requested: bool = False


@dataclass(frozen=True)
class ReapReport:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.requeued + self.failed + self.cancelled


@dataclass(frozen=True)
class JobOutputRecord:
    job_id: int
    name: str
    blob_key: str
    byte_size: int
    created_at: datetime


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    lanes: list[str]
    concurrency: int
    gpu_name: str | None
    current_jobs: list[int]
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None


@dataclass
class JobQueue:
    """Submit, observe and settle jobs on one database."""

    database: Database
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], datetime] = utcnow
    default_max_attempts: int = 3
    rng: random.Random = field(default_factory=random.Random)
    #: Most jobs one owner may have queued at once (0: no limit); see the module's docstring.
    max_queued_per_owner: int = 0
    #: Called with the (owner, kind) pairs of every batch before it is queued; raises to refuse it (the
    #: services install the permission check here, so no route queues a job for someone who may not).
    admit: Callable[[set[tuple[int, str]]], None] | None = None

    def __post_init__(self) -> None:
        self._insert = postgresql.insert if self.database.is_postgres else sqlite.insert
        self._sql = _Statements(postgres=self.database.is_postgres)

    # ------------------------------------------------------------------ submit / observe

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        lane: str = "interactive",
        priority: int = 0,
        owner_id: int = LOCAL_USER_ID,
        max_attempts: int | None = None,
        run_after: datetime | None = None,
    ) -> int:
        """Queue one job; returns its id. On PostgreSQL, waiting workers of the lane wake at commit."""
        spec = JobSpec(kind, payload or {}, lane, priority, owner_id, max_attempts, run_after)
        return self.enqueue_many([spec])[0]

    def enqueue_many(self, specs: Iterable[JobSpec], *, retry_of: int | None = None) -> list[int]:
        """Queue several jobs in one transaction, with one INSERT for the batch; returns their ids in order.

        One job on PostgreSQL (a click in the app) is one statement that ranks, inserts
        and notifies, committed on its own: a single round trip before workers wake. With a
        per-owner limit it runs after the owner's advisory lock, in the same transaction: a
        statement's snapshot is taken when it starts, so the count must come after the lock.

        Raises ``TooManyQueuedJobs`` when the batch would leave an owner with more queued jobs
        than ``max_queued_per_owner``; then nothing of the batch is queued. A retry asked for
        with :meth:`retry` is a new job and counts like any other.
        """
        specs = list(specs)
        if not specs:
            return []
        now = self.clock()
        # Every spec is checked before a lock is taken: a malformed request never waits for one, nor holds it.
        rows = [self._job_row(spec, now, retry_of) for spec in specs]
        if self.admit is not None:
            self.admit({(row["owner_id"], row["kind"]) for row in rows})
        limit = self.max_queued_per_owner
        if len(rows) == 1 and self.database.is_postgres:
            params = {f"p_{k}": v for k, v in rows[0].items()}
            if not limit:
                with self.database.autocommit() as conn:
                    return [conn.execute(self._sql.enqueue_one, params).scalar_one()]
            owner_id = rows[0]["owner_id"]
            with self.database.write() as conn:
                self._lock_owners(conn, [owner_id])
                job_id = conn.execute(self._sql.enqueue_one_within, {**params, "p_limit": limit}).scalar()
                if job_id is None:
                    raise TooManyQueuedJobs(owner_id, self._queued_of(conn, [owner_id])[owner_id], limit)
                return [job_id]
        with self.database.write() as conn:
            if limit:
                self._check_room(conn, rows, limit)
            self._rank(conn, rows)
            ids = list(conn.execute(self._sql.insert_job, rows).scalars())
            for lane in sorted({spec.lane for spec in specs}):
                self._notify(conn, lane)
        return ids

    def _job_row(self, spec: JobSpec, now: datetime, retry_of: int | None) -> dict[str, Any]:
        """The row for a valid spec, all but its fair rank (``InvalidJobRequest`` for an invalid one)."""
        if spec.lane not in JOB_LANES:
            raise InvalidJobRequest(f"Unknown lane {spec.lane!r}; use one of {', '.join(JOB_LANES)}.", lane=spec.lane)
        if not isinstance(spec.kind, str) or not spec.kind or len(spec.kind) > 64 or not spec.kind.isprintable():
            raise InvalidJobRequest("A job kind is a name of 1 to 64 printable characters.", kind=spec.kind)
        attempts = self.default_max_attempts if spec.max_attempts is None else spec.max_attempts
        if not _is_int(attempts) or not 1 <= attempts <= MAX_ATTEMPTS_LIMIT:
            raise InvalidJobRequest(f"max_attempts is a whole number from 1 to {MAX_ATTEMPTS_LIMIT}.",
                                    max_attempts=attempts)
        low, high = PRIORITY_RANGE
        if not _is_int(spec.priority) or not low <= spec.priority <= high:
            raise InvalidJobRequest(f"A job priority is a whole number from {low} to {high}.", priority=spec.priority)
        if not _is_int(spec.owner_id) or not 0 < spec.owner_id <= _INT32_MAX:
            raise InvalidJobRequest("A job's owner is a user id.", owner_id=spec.owner_id)
        payload = check_payload(spec.kind, spec.payload)
        try:
            check_json(payload, f"the {spec.kind} job's payload")
        except UnsafeText as exc:
            raise InvalidJobRequest(str(exc), kind=spec.kind) from None
        return dict(
            kind=spec.kind, lane=spec.lane, payload=payload, priority=int(spec.priority),
            owner_id=spec.owner_id, status=JobStatus.QUEUED.value, attempts=0, max_attempts=attempts,
            run_after=spec.run_after or now, cancel_requested=False, progress=0.0,
            created_at=now, updated_at=now, retry_of=retry_of,
        )

    def _rank(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Give validated rows their fair ranks (round-robin across owners by virtual time).

        An owner's jobs get consecutive ranks, starting no lower than the lane's lowest
        queued rank, so a newcomer's job is not queued behind someone else's backlog.
        Two enqueues racing on PostgreSQL may give equal ranks; ties go by age.
        """
        next_rank: dict[tuple[int, str], int] = {}
        for row in rows:
            key = (row["owner_id"], row["lane"])
            if key not in next_rank:
                owner_last, lane_lowest = conn.execute(
                    self._sql.ranks, {"p_owner_id": row["owner_id"], "p_lane": row["lane"]}
                ).one()
                next_rank[key] = max(0 if owner_last is None else owner_last + 1, lane_lowest or 0)
            row["fair_rank"] = next_rank[key]
            next_rank[key] += 1

    def _check_room(self, conn: Connection, rows: list[dict[str, Any]], limit: int) -> None:
        """Refuse the whole batch if it would leave any of its owners with more than ``limit`` queued jobs."""
        adding = Counter(row["owner_id"] for row in rows)
        self._lock_owners(conn, adding)
        queued = self._queued_of(conn, adding)
        for owner_id in sorted(adding):
            if queued[owner_id] + adding[owner_id] > limit:
                raise TooManyQueuedJobs(owner_id, queued[owner_id], limit, adding=adding[owner_id])

    def _lock_owners(self, conn: Connection, owner_ids: Iterable[int]) -> None:
        """PostgreSQL: hold each owner's enqueue lock until commit (in id order, so two batches cannot deadlock).

        SQLite needs none: the write transaction (``BEGIN IMMEDIATE``) already admits one writer at a time.
        """
        if self.database.is_postgres:
            for owner_id in sorted(set(owner_ids)):
                conn.execute(self._sql.lock_owner, {"p_space": _OWNER_LOCK_SPACE, "p_owner_id": owner_id})

    def _queued_of(self, conn: Connection, owner_ids: Iterable[int]) -> Counter[int]:
        """How many queued jobs each of these owners has now (0 for one with none)."""
        rows = conn.execute(
            sa.select(c.owner_id, sa.func.count())
            .where((c.status == _status(JobStatus.QUEUED)) & c.owner_id.in_(sorted(set(owner_ids))))
            .group_by(c.owner_id)
        )
        return Counter({owner_id: count for owner_id, count in rows})

    def get(self, job_id: int) -> JobRecord:
        with self.database.read() as conn:
            row = conn.execute(sa.select(*_JOB_COLUMNS).where(c.id == job_id)).first()
        if row is None:
            raise JobNotFound(job_id)
        return JobRecord.from_row(row)

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        lane: str | None = None,
        kind: str | None = None,
        owner_id: int | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> list[JobRecord]:
        query = sa.select(*_JOB_COLUMNS)
        if status is not None:
            query = query.where(c.status.in_([status] if isinstance(status, str) else list(status)))
        if lane is not None:
            query = query.where(c.lane == lane)
        if kind is not None:
            query = query.where(c.kind == kind)
        if owner_id is not None:
            query = query.where(c.owner_id == owner_id)
        query = query.order_by(c.id.desc() if newest_first else c.id.asc()).limit(limit)
        with self.database.read() as conn:
            return [JobRecord.from_row(r) for r in conn.execute(query)]

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of jobs per (lane, status): queue depth for the Status page and `jobs list`."""
        with self.database.read() as conn:
            rows = conn.execute(sa.select(c.lane, c.status, sa.func.count()).group_by(c.lane, c.status))
            return {(lane, status): n for lane, status, n in rows}

    def wait(self, job_id: int, *, timeout_s: float | None = None, poll_s: float = 0.05) -> JobRecord:
        """Block until the job is terminal (or the timeout passes) and return it as it is then."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job.terminal or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(poll_s)

    def cancel(self, job_id: int) -> CancelOutcome:
        """Cancel a queued job at once, or ask a running one to stop. Never retried afterwards."""
        now = self.clock()
        with self.database.write() as conn:
            done = conn.execute(
                sa.update(jobs_t)
                .where((c.id == job_id) & (c.status == _status(JobStatus.QUEUED)))
                .values(status=JobStatus.CANCELLED.value, cancel_requested=True, finished_at=now, updated_at=now)
            ).rowcount
            if done:
                return CancelOutcome.CANCELLED
            asked = conn.execute(
                sa.update(jobs_t)
                .where((c.id == job_id) & (c.status == _status(JobStatus.RUNNING)))
                .values(cancel_requested=True, updated_at=now)
            ).rowcount
            if asked:
                self._notify(conn, f"{CANCEL_PREFIX}{job_id}")
                return CancelOutcome.REQUESTED
            if conn.execute(sa.select(c.id).where(c.id == job_id)).first() is None:
                raise JobNotFound(job_id)
            return CancelOutcome.ALREADY_FINISHED

    def retry(self, job_id: int) -> int:
        """Queue a failed or cancelled job again as a new job (the old one keeps its terminal status)."""
        old = self.get(job_id)
        if old.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise InvalidJobRequest(
                f"Job {job_id} is {old.status.value}; only a failed or cancelled job can be retried.",
                job_id=job_id, status=old.status.value,
            )
        spec = JobSpec(old.kind, old.payload, old.lane, old.priority, old.owner_id, old.max_attempts)
        (new_id,) = self.enqueue_many([spec], retry_of=old.id)
        return new_id

    # ------------------------------------------------------------------ worker side

    def next_due(self, lanes: Sequence[str]) -> datetime | None:
        """When the earliest queued job of these lanes may run (None: nothing queued). Takes no lock."""
        with self.database.read() as conn:
            return conn.execute(self._sql.next_due, {"p_lanes": list(lanes)}).scalar()

    def claim(self, worker_id: str, lanes: Sequence[str], *, lease_s: float) -> JobRecord | None:
        """Take the next due job, trying the lanes in the order given; None when none is due."""
        jobs = self.claim_many(worker_id, lanes, lease_s=lease_s, limit=1)
        return jobs[0] if jobs else None

    def claim_many(self, worker_id: str, lanes: Sequence[str], *, lease_s: float, limit: int) -> list[JobRecord]:
        """Take up to ``limit`` due jobs of the first lane (in the order given) that has any, in claim order.

        On SQLite it first looks without a lock, so an idle worker never takes the write
        lock to find nothing.
        """
        if self.database.is_sqlite:
            due = self.next_due(lanes)
            if due is None or due > self.clock():
                return []
        with self.database.autocommit(durable=False) as conn:
            return self._claim_in(conn, worker_id, lanes, lease_s, limit)

    def _claim_in(
        self, conn: Connection, worker_id: str, lanes: Sequence[str], lease_s: float, limit: int
    ) -> list[JobRecord]:
        now = self.clock()
        params = {"p_now": now, "p_lease_until": now + timedelta(seconds=lease_s), "p_worker": worker_id,
                  "p_limit": max(1, limit)}
        for lane in lanes:
            rows = conn.execute(self._sql.claim, {**params, "p_lane": lane}).all()
            if rows:
                return _in_claim_order(JobRecord.from_row(row) for row in rows)
        return []

    def renew_leases(self, worker_id: str, job_ids: Sequence[int], *, lease_s: float) -> dict[int, LeaseState]:
        """Heartbeat for the jobs this worker runs; a job missing from the answer's owned set was lost."""
        if not job_ids:
            return {}
        now = self.clock()
        params = {"p_ids": list(job_ids), "p_worker": worker_id, "p_now": now,
                  "p_lease_until": now + timedelta(seconds=lease_s)}
        with self.database.autocommit(durable=False) as conn:
            rows = conn.execute(self._sql.renew, params).all()
        states = {job_id: LeaseState(owned=False) for job_id in job_ids}
        states.update({job_id: LeaseState(owned=True, cancel_requested=bool(cancel)) for job_id, cancel in rows})
        return states

    def report_progress(self, job_id: int, worker_id: str, fraction: float, message: str | None = None) -> LeaseState:
        params = {"p_id": job_id, "p_worker": worker_id, "p_now": self.clock(),
                  "p_progress": min(1.0, max(0.0, float(fraction))), "p_message": message[:500] if message else None}
        with self.database.autocommit(durable=False) as conn:
            row = conn.execute(self._sql.progress, params).first()
        return LeaseState(owned=False) if row is None else LeaseState(owned=True, cancel_requested=bool(row[0]))

    def complete(self, job_id: int, worker_id: str, result: dict[str, Any] | None = None) -> bool:
        """Mark the job succeeded; False if this worker no longer held it."""
        won, _ = self.settle_and_claim(worker_id, {job_id: result}, lanes=(), lease_s=0.0)
        return job_id in won

    def settle_and_claim(
        self,
        worker_id: str,
        done: Mapping[int, dict[str, Any] | None],
        *,
        lanes: Sequence[str],
        lease_s: float,
        limit: int = 1,
    ) -> tuple[frozenset[int], list[JobRecord]]:
        """Mark finished jobs succeeded (with their results) and claim up to ``limit`` more, atomically.

        A busy worker pays one round trip per batch instead of two per job. PostgreSQL:
        one statement (two data-modifying CTEs); SQLite: one ``BEGIN IMMEDIATE``
        transaction. Returns the ids this worker still held (the others were lost to the
        reaper and are left as they are) and the jobs claimed, in claim order.

        Completions commit without waiting for the WAL flush (PostgreSQL): if the server
        crashes right after, the job is found running with an expired lease and runs
        again, which at-least-once delivery allows; its outputs are keyed by job id.
        """
        if not done:
            return frozenset(), (self.claim_many(worker_id, lanes, lease_s=lease_s, limit=limit) if lanes else [])
        now = self.clock()
        held = {"p_worker": worker_id, "p_now": now}
        if not self.database.is_postgres:
            with self.database.write(durable=False) as conn:
                won = frozenset(
                    job_id for job_id, result in done.items()
                    if conn.execute(self._sql.complete, {**held, "p_id": job_id, "p_result": result}).first()
                )
                return won, (self._claim_in(conn, worker_id, lanes, lease_s, limit) if lanes else [])
        params = {**held, "p_ids": list(done),
                  "p_results": {str(job_id): result for job_id, result in done.items() if result is not None}}
        with self.database.autocommit(durable=False) as conn:
            if not lanes:
                return frozenset(conn.execute(self._sql.complete_many, params).scalars()), []
            claim = {"p_lane": lanes[0], "p_lease_until": now + timedelta(seconds=lease_s), "p_limit": max(1, limit)}
            won: frozenset[int] = frozenset()
            claimed = []
            for row in conn.execute(self._sql.complete_and_claim, {**params, **claim}):
                data = row._asdict()
                won = frozenset(data.pop("won") or ())
                if data["id"] is not None:
                    claimed.append(JobRecord.from_row(data))
            if claimed or len(lanes) == 1:
                return won, _in_claim_order(claimed)
            return won, self._claim_in(conn, worker_id, lanes[1:], lease_s, limit)

    def fail(self, job: JobRecord, worker_id: str, error: ErrorInfo, *, retryable: bool) -> JobStatus | None:
        """Settle a failed attempt: back to the queue after a backoff, or failed for good.

        A job whose cancel was requested ends cancelled instead; it is never retried.
        Returns the status it went to, or None if this worker no longer held the job.
        """
        now = self.clock()
        error_values = dict(error_type=error.type[:200], error_message=error.message, error_traceback=error.traceback)
        held = {"p_id": job.id, "p_worker": worker_id}
        with self.database.write() as conn:
            if retryable and job.attempts < job.max_attempts:
                delay = self.policy.delay_s(job.attempts, self.rng)
                requeued = conn.execute(
                    sa.update(jobs_t)
                    .where(self._sql.running_by & c.cancel_requested.is_(False))
                    .values(
                        status=JobStatus.QUEUED.value, run_after=now + timedelta(seconds=delay), lease_owner=None,
                        lease_expires_at=None, updated_at=now, **error_values,
                    ),
                    held,
                ).rowcount
                if requeued:
                    self._notify(conn, job.lane)
                    return JobStatus.QUEUED
            row = conn.execute(
                sa.update(jobs_t)
                .where(self._sql.running_by)
                .values(
                    status=sa.case((c.cancel_requested.is_(True), JobStatus.CANCELLED.value), else_=JobStatus.FAILED.value),
                    finished_at=now, updated_at=now, lease_expires_at=None, **error_values,
                )
                .returning(c.status),
                held,
            ).first()
        return None if row is None else JobStatus(row[0])

    def mark_cancelled(self, job_id: int, worker_id: str) -> bool:
        """The handler stopped because its cancel was requested."""
        now = self.clock()
        with self.database.write() as conn:
            return bool(
                conn.execute(
                    sa.update(jobs_t)
                    .where(self._sql.running_by)
                    .values(status=JobStatus.CANCELLED.value, finished_at=now, updated_at=now, lease_expires_at=None),
                    {"p_id": job_id, "p_worker": worker_id},
                ).rowcount
            )

    def release(self, job_ids: int | Sequence[int], worker_id: str) -> list[int]:
        """Hand running jobs back untouched (worker shutdown, or claimed but not started): queued again,
        this attempt not counted; a job whose cancel was requested ends cancelled. Returns the ids
        this worker still held."""
        ids = [job_ids] if isinstance(job_ids, int) else list(job_ids)
        if not ids:
            return []
        now = self.clock()
        with self.database.write() as conn:
            released = conn.execute(
                sa.update(jobs_t)
                .where(c.id.in_(ids) & (c.status == _status(JobStatus.RUNNING)) & (c.lease_owner == worker_id))
                .values(
                    status=sa.case((c.cancel_requested.is_(True), JobStatus.CANCELLED.value), else_=JobStatus.QUEUED.value),
                    attempts=sa.case((c.attempts > 0, c.attempts - 1), else_=0),
                    finished_at=sa.case((c.cancel_requested.is_(True), sa.literal(now, UTCDateTime)), else_=sa.null()),
                    lease_owner=None, lease_expires_at=None, run_after=now, updated_at=now,
                )
                .returning(c.id, c.lane)
            ).all()
            for lane in sorted({lane for _, lane in released}):
                self._notify(conn, lane)
        return [job_id for job_id, _ in released]

    def reap_expired(self) -> ReapReport:
        """Settle running jobs whose worker stopped renewing the lease (crashed, killed, cut off)."""
        now = self.clock()
        expired = (c.status == _status(JobStatus.RUNNING)) & (c.lease_expires_at < now)
        lost = dict(error_type="LeaseExpired", updated_at=now, lease_expires_at=None)
        with self.database.write() as conn:
            cancelled = conn.execute(
                sa.update(jobs_t)
                .where(expired & c.cancel_requested.is_(True))
                .values(status=JobStatus.CANCELLED.value, finished_at=now, **lost,
                        error_message="The worker running this job stopped answering after it was cancelled.")
            ).rowcount
            failed = conn.execute(
                sa.update(jobs_t)
                .where(expired & (c.attempts >= c.max_attempts))
                .values(status=JobStatus.FAILED.value, finished_at=now, **lost,
                        error_message="The worker running this job stopped answering, and no attempts are left.")
            ).rowcount
            requeued_lanes = conn.execute(
                sa.update(jobs_t)
                .where(expired)
                .values(status=JobStatus.QUEUED.value, run_after=now, lease_owner=None, **lost,
                        error_message="The worker running this job stopped answering; the job was queued again.")
                .returning(c.lane)
            ).scalars().all()
            for lane in sorted(set(requeued_lanes)):
                self._notify(conn, lane)
        return ReapReport(requeued=len(requeued_lanes), failed=failed, cancelled=cancelled)

    # ------------------------------------------------------------------ outputs

    def record_output(self, job_id: int, name: str, blob_key: str, byte_size: int) -> bool:
        """Remember a job's named output; a second write of the same name (a re-run) is a no-op."""
        stmt = (
            self._insert(outputs_t)
            .values(job_id=job_id, name=name, blob_key=blob_key, byte_size=byte_size, created_at=self.clock())
            .on_conflict_do_nothing(index_elements=["job_id", "name"])
            .returning(outputs_t.c.id)
        )
        with self.database.write() as conn:
            return conn.execute(stmt).first() is not None

    def output(self, job_id: int, name: str) -> JobOutputRecord | None:
        """The job's output ``name``, as its first attempt to write it recorded it (None: not written yet)."""
        oc = outputs_t.c
        with self.database.read() as conn:
            row = conn.execute(
                sa.select(oc.job_id, oc.name, oc.blob_key, oc.byte_size, oc.created_at)
                .where((oc.job_id == job_id) & (oc.name == name))
            ).first()
        return None if row is None else JobOutputRecord(**row._mapping)

    def outputs(self, job_id: int) -> list[JobOutputRecord]:
        oc = outputs_t.c
        with self.database.read() as conn:
            rows = conn.execute(
                sa.select(oc.job_id, oc.name, oc.blob_key, oc.byte_size, oc.created_at)
                .where(oc.job_id == job_id)
                .order_by(oc.id)
            )
            return [JobOutputRecord(**r._mapping) for r in rows]

    # ------------------------------------------------------------------ workers

    def register_worker(self, worker_id: str, *, host: str, pid: int, lanes: Sequence[str], concurrency: int,
                        gpu_name: str | None = None) -> None:
        now = self.clock()
        values = dict(id=worker_id, host=host, pid=pid, lanes=list(lanes), concurrency=concurrency, gpu_name=gpu_name,
                      current_jobs=[], started_at=now, heartbeat_at=now, stopped_at=None)
        stmt = self._insert(workers_t).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={k: v for k, v in values.items() if k != "id"})
        with self.database.write() as conn:
            conn.execute(stmt)

    def worker_heartbeat(self, worker_id: str, current_jobs: Sequence[int]) -> None:
        with self.database.write() as conn:
            conn.execute(
                sa.update(workers_t)
                .where(workers_t.c.id == worker_id)
                .values(heartbeat_at=self.clock(), current_jobs=list(current_jobs))
            )

    def worker_stopped(self, worker_id: str) -> None:
        with self.database.write() as conn:
            conn.execute(
                sa.update(workers_t).where(workers_t.c.id == worker_id).values(stopped_at=self.clock(), current_jobs=[])
            )

    def workers(self, *, alive_within_s: float | None = None) -> list[WorkerInfo]:
        query = sa.select(*workers_t.c).order_by(workers_t.c.started_at.desc())
        if alive_within_s is not None:
            since = self.clock() - timedelta(seconds=alive_within_s)
            query = query.where(workers_t.c.stopped_at.is_(None) & (workers_t.c.heartbeat_at >= since))
        with self.database.read() as conn:
            return [WorkerInfo(**r._mapping) for r in conn.execute(query)]

    # ------------------------------------------------------------------ wake-ups

    def _notify(self, conn: Connection, payload: str) -> None:
        if self.database.is_postgres:
            conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, payload)))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _status(status: JobStatus) -> sa.ColumnElement[str]:
    """A status as an SQL literal, not a bound parameter: the planners of both databases
    use a partial index (``WHERE status = 'queued'``) only when they can see the value."""
    return sa.literal_column(f"'{status.value}'", sa.String)


def _in_claim_order(jobs: Iterable[JobRecord]) -> list[JobRecord]:
    """UPDATE ... RETURNING gives rows in no particular order; the claim order is priority, fair rank, age."""
    return sorted(jobs, key=lambda job: (-job.priority, job.fair_rank, job.id))


#: A success clears what an earlier attempt left (a lease that ran out, a retried error): a succeeded job shows none.
_NO_ERROR = {"error_type": None, "error_message": None, "error_traceback": None}


class _Statements:
    """The queue's hot statements, built once with bind parameters.

    Building a SQLAlchemy statement per call costs more than running it (cache keys,
    coercions); with these the per-job cost is the database round trip.
    """

    def __init__(self, *, postgres: bool) -> None:
        p = sa.bindparam
        now = p("p_now", type_=UTCDateTime)
        queued = c.status == _status(JobStatus.QUEUED)
        #: "Still running, and still this worker's": the guard of every settle.
        self.running_by = running_by = (
            (c.id == p("p_id")) & (c.status == _status(JobStatus.RUNNING)) & (c.lease_owner == p("p_worker"))
        )

        self.insert_job = sa.insert(jobs_t).returning(c.id, sort_by_parameter_order=True)
        # The fair rank's two inputs: the owner's last rank in the lane, and the lane's lowest (NULL when none).
        owner_last = (
            sa.select(sa.func.max(c.fair_rank))
            .where(queued & (c.lane == p("p_lane")) & (c.owner_id == p("p_owner_id")))
            .scalar_subquery()
        )
        lane_lowest = sa.select(sa.func.min(c.fair_rank)).where(queued & (c.lane == p("p_lane"))).scalar_subquery()
        self.ranks = sa.select(owner_last, lane_lowest)
        if postgres:
            # WITH ins AS (INSERT INTO jobs (...) SELECT :kind, ..., GREATEST(owner's last rank + 1,
            # lane's lowest rank) RETURNING id, lane) SELECT id, pg_notify(channel, lane) FROM ins
            rank = sa.func.greatest(sa.func.coalesce(owner_last + 1, 0), sa.func.coalesce(lane_lowest, 0))
            values = [sa.bindparam(f"p_{col.name}", type_=col.type) for col in _ENQUEUE_COLUMNS]
            inserted = (
                sa.insert(jobs_t)
                .from_select([col.name for col in _ENQUEUE_COLUMNS] + ["fair_rank"], sa.select(*values, rank))
                .returning(c.id, c.lane)
                .cte("ins")
            )
            self.enqueue_one = sa.select(inserted.c.id, sa.func.pg_notify(NOTIFY_CHANNEL, inserted.c.lane))
            # The same, inserting nothing (no row back) when the owner already has p_limit jobs queued;
            # run only after lock_owner, in the same transaction.
            owner_queued = (
                sa.select(sa.func.count()).where(queued & (c.owner_id == p("p_owner_id"))).scalar_subquery()
            )
            within = (
                sa.insert(jobs_t)
                .from_select([col.name for col in _ENQUEUE_COLUMNS] + ["fair_rank"],
                             sa.select(*values, rank).where(owner_queued < p("p_limit", type_=sa.Integer)))
                .returning(c.id, c.lane)
                .cte("ins")
            )
            self.enqueue_one_within = sa.select(within.c.id, sa.func.pg_notify(NOTIFY_CHANNEL, within.c.lane))
            self.lock_owner = sa.select(sa.func.pg_advisory_xact_lock(
                sa.cast(p("p_space"), sa.Integer), sa.cast(p("p_owner_id"), sa.Integer)))
        self.next_due = sa.select(sa.func.min(c.run_after)).where(queued & c.lane.in_(p("p_lanes", expanding=True)))

        pick = (
            sa.select(c.id)
            .where(queued & (c.lane == p("p_lane")) & (c.run_after <= now))
            .order_by(c.priority.desc(), c.fair_rank, c.id)
            .limit(p("p_limit", type_=sa.Integer))
        )
        if postgres:
            pick = pick.with_for_update(skip_locked=True)
            # id = ANY(ARRAY(subquery)): the pick runs once, as an InitPlan, before any row is updated.
            picked = c.id == sa.func.any(sa.func.array(pick.scalar_subquery()))
        else:
            picked = c.id.in_(pick.scalar_subquery())
        self.claim = (
            sa.update(jobs_t)
            .where(picked)
            .values(
                status=JobStatus.RUNNING.value, attempts=c.attempts + 1, lease_owner=p("p_worker"),
                lease_expires_at=p("p_lease_until", type_=UTCDateTime), heartbeat_at=now, started_at=now,
                updated_at=now, progress=0.0, progress_message=None,
            )
            .returning(*_JOB_COLUMNS)
        )
        self.renew = (
            sa.update(jobs_t)
            .where(c.id.in_(p("p_ids", expanding=True)) & (c.status == _status(JobStatus.RUNNING))
                   & (c.lease_owner == p("p_worker")))
            .values(lease_expires_at=p("p_lease_until", type_=UTCDateTime), heartbeat_at=now)
            .returning(c.id, c.cancel_requested)
        )
        self.progress = (
            sa.update(jobs_t)
            .where(running_by)
            .values(progress=p("p_progress"), progress_message=p("p_message"), updated_at=now)
            .returning(c.cancel_requested)
        )
        self.complete = (
            sa.update(jobs_t)
            .where(running_by)
            .values(
                status=JobStatus.SUCCEEDED.value, result=p("p_result", type_=jobs_t.c.result.type), progress=1.0,
                finished_at=now, updated_at=now, lease_expires_at=None, **_NO_ERROR,
            )
            .returning(c.id)
        )
        if postgres:
            # The results of a batch travel as one JSON object keyed by job id; a job missing from it gets NULL.
            results = sa.cast(p("p_results", type_=postgresql.JSONB), postgresql.JSONB)
            self.complete_many = (
                sa.update(jobs_t)
                .where((c.id == sa.func.any(p("p_ids", type_=postgresql.ARRAY(sa.BigInteger))))
                       & (c.status == _status(JobStatus.RUNNING)) & (c.lease_owner == p("p_worker")))
                .values(
                    status=JobStatus.SUCCEEDED.value, result=results[sa.cast(c.id, sa.Text)], progress=1.0,
                    finished_at=now, updated_at=now, lease_expires_at=None, **_NO_ERROR,
                )
                .returning(c.id)
            )
            # WITH done AS (UPDATE ... RETURNING id), claimed AS (UPDATE ... RETURNING *)
            # SELECT (SELECT array_agg(id) FROM done) AS won, claimed.* FROM (SELECT 1) LEFT JOIN claimed ON true
            # (one row with NULLs when nothing was claimed, so the answer always carries ``won``).
            done = self.complete_many.cte("done")
            claimed = self.claim.cte("claimed")
            one = sa.select(sa.literal(1).label("one")).subquery("one")
            won = sa.select(sa.func.array_agg(done.c.id)).scalar_subquery().label("won")
            self.complete_and_claim = sa.select(won, *claimed.c).select_from(one.outerjoin(claimed, sa.true()))
