"""Queue benchmark: no-op jobs/s and enqueue-to-pickup latency, ChatEdit against PgQueuer.

Usage (from the repository root)::

    .venv/bin/python bench/job_queue.py [--jobs N] [--quick] [--json PATH]

Three systems run the same two workloads, each on a database made for the measurement
and removed afterwards (a temporary SQLite file; a PostgreSQL database with a random
name, created and dropped through the server's maintenance database):

* ``chatedit-sqlite`` and ``chatedit-postgres``: real ``chatedit worker`` processes
  (``--lanes interactive --concurrency 1``, default settings) running ``noop`` jobs.
* ``pgqueuer``: PgQueuer worker processes (``pgqueuer.run``, what ``pgq run`` calls),
  default settings (batch size 10, durable tables), a no-op entrypoint, asyncpg when it
  is installed and psycopg's async connection otherwise.

Throughput: start 1 (then 2) worker processes on an empty queue and wait until they
listen, so process start-up is not timed; enqueue N jobs in one transaction; jobs/s is
N over the time from that commit to the last job's completion, read from the rows. The
median of ``--repeats`` batches counts. Pickup latency: with one idle worker waiting,
enqueue single jobs ``--gap-ms`` apart; latency is when the worker claimed the job
minus when enqueue was called.

Figures that matter are ratios against PgQueuer measured in the same run (the machine's
speed cancels out). The benchmark only reports; it never fails on a target.
"""

# ruff: noqa: E402
# (Most imports follow the sys.path fix below, on purpose.)

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ is first on sys.path; keep it off, so no script here can stand in
# for a standard-library module (this file was bench/queue.py once, which did).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import psycopg
from psycopg import sql

DEFAULT_PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
CHATEDIT_CLI = str(Path(sys.executable).with_name("chatedit"))
#: PgQueuer's default (``pgq run --batch-size``), the value its docs start from.
PGQUEUER_BATCH_SIZE = 10
PGQUEUER_WORKER_ARG = "--run-pgqueuer-worker"  # internal: this file, re-run as one PgQueuer worker

POLL_S = 0.01  # how often the parent looks whether a batch is done (the timings come from the rows)
SETTLE_S = 0.3  # after workers report ready, so that their first (empty) claim and wait have begun
PICKUP_WARMUP_JOBS = 10
READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 300.0


# ---------------------------------------------------------------------------- figures


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default method; p50 is the median)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Batch:
    """Jobs enqueued in one transaction: their ids and the wall-clock time just after the commit."""

    ids: list[int]
    committed_at: float
    enqueue_s: float


@dataclass(frozen=True)
class BatchTiming:
    """When a batch's jobs were claimed and finished, from the rows (wall-clock seconds)."""

    done: int
    first_claim: float
    last_done: float


@dataclass(frozen=True)
class Drain:
    """One throughput sample."""

    jobs: int
    seconds: float  # commit -> last completion
    wake_ms: float  # commit -> first claim
    enqueue_s: float  # the enqueue transaction itself

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def steady_jobs_per_s(self) -> float:
        """Jobs/s from the first claim on: what is left once a slow wake-up is taken out."""
        return self.jobs / max(1e-9, self.seconds - self.wake_ms / 1000)


@dataclass(frozen=True)
class Pickup:
    """One single job's wait for an idle worker, from the enqueue call and from its commit."""

    from_enqueue_ms: float
    from_commit_ms: float


@dataclass
class SystemResult:
    """One system's samples; throughput keyed by the number of worker processes."""

    name: str
    drains: dict[int, list[Drain]] = field(default_factory=dict)
    pickups: list[Pickup] = field(default_factory=list)

    def jobs_per_s(self, workers: int) -> float:
        return statistics.median(d.jobs_per_s for d in self.drains[workers])

    def steady_jobs_per_s(self, workers: int) -> float:
        return statistics.median(d.steady_jobs_per_s for d in self.drains[workers])

    def wake_ms(self, workers: int) -> float:
        return statistics.median(d.wake_ms for d in self.drains[workers])

    def enqueue_jobs_per_s(self) -> float:
        return statistics.median(d.jobs / d.enqueue_s for ds in self.drains.values() for d in ds)

    def pickup_ms(self, q: float) -> float:
        return quantile([p.from_enqueue_ms for p in self.pickups], q)

    def after_commit_ms(self, q: float) -> float:
        return quantile([p.from_commit_ms for p in self.pickups], q)

    def to_json(self) -> dict[str, Any]:
        return {
            "jobs_per_s": {str(w): round(self.jobs_per_s(w), 1) for w in sorted(self.drains)},
            "steady_jobs_per_s": {str(w): round(self.steady_jobs_per_s(w), 1) for w in sorted(self.drains)},
            "batch_wake_ms": {str(w): round(self.wake_ms(w), 1) for w in sorted(self.drains)},
            "enqueue_jobs_per_s": round(self.enqueue_jobs_per_s(), 1),
            "samples": {str(w): [{"jobs": d.jobs, "seconds": round(d.seconds, 4), "wake_ms": round(d.wake_ms, 2),
                                  "enqueue_s": round(d.enqueue_s, 4)} for d in ds]
                        for w, ds in sorted(self.drains.items())},
            "pickup_ms": _summary([p.from_enqueue_ms for p in self.pickups]),
            "pickup_after_commit_ms": _summary([p.from_commit_ms for p in self.pickups]),
        }


def _summary(values: Sequence[float]) -> dict[str, Any]:
    return {"n": len(values), **{f"p{round(q * 100)}": round(quantile(values, q), 2) for q in (0.5, 0.9, 0.99)},
            "max": round(max(values), 2) if values else None}


# ---------------------------------------------------------------------------- temporary databases


@contextmanager
def temporary_pg_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database with a random name, as a URL; dropped on exit, also after a failure."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _with_dbname(server_url: str, dbname: str) -> str:
    """The server URL pointed at another database (a URL, which psycopg, asyncpg and SQLAlchemy all take)."""
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    return f"postgresql://{user}{password}@{host}:{port}/{dbname}"


# ---------------------------------------------------------------------------- worker processes


class WorkerProcesses:
    """The worker subprocesses of one deployment; their logs are kept for the message if one dies."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, argv: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        log_path = self.log_dir / f"worker-{len(self.procs)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((proc, log_path))

    def check_alive(self) -> None:
        for proc, log_path in self.procs:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker process {proc.pid} exited with {proc.returncode}:\n{tail}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (a clean stop for both systems), then SIGKILL for any that do not end in time."""
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str, check: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)


# ---------------------------------------------------------------------------- the systems


class Deployment(Protocol):
    """One system on one fresh database, as the measurements drive it."""

    workers: WorkerProcesses

    def start_workers(self, count: int) -> None: ...
    def enqueue_batch(self, count: int) -> Batch: ...
    def enqueue_one(self) -> None: ...
    def unfinished(self) -> int: ...
    def timing(self, batch: Batch) -> BatchTiming: ...
    def pickups(self) -> list[Pickup]: ...


class System(Protocol):
    name: str

    def deploy(self) -> AbstractContextManager[Deployment]: ...


class ChatEditDeployment:
    """ChatEdit's queue on one database, with `chatedit worker` processes serving the interactive lane."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        from db.engine import Database
        from db.migrate import upgrade
        from jobs.queue import JobQueue

        self.database = Database(database_url)
        upgrade(self.database)
        self.queue = JobQueue(self.database)
        self.data_dir = data_dir
        self.workers = WorkerProcesses(data_dir)
        self.env = {**os.environ, "CHATEDIT_DATABASE_URL": database_url, "CHATEDIT_DATA_DIR": str(data_dir)}
        self.env.pop("CHATEDIT_CONFIG", None)
        self._count = self._open_probe()
        self._pickup_sent: dict[int, float] = {}  # job id -> when enqueue() returned

    def _open_probe(self) -> Callable[[str], int]:
        """A bare connection for the parent's polling, so that watching costs the workers little."""
        if self.database.is_sqlite:
            conn = sqlite3.connect(self.database.engine.url.database or "", isolation_level=None)
            self._probe_conn: Any = conn
            return lambda query: int(conn.execute(query).fetchone()[0])
        pg = self._probe_conn = psycopg.connect(self.database.engine.url.set(drivername="postgresql")
                                                .render_as_string(hide_password=False), autocommit=True)
        return lambda query: int(pg.execute(query).fetchone()[0])  # type: ignore[index]

    def start_workers(self, count: int) -> None:
        argv = [CHATEDIT_CLI, "worker", "--lanes", "interactive", "--concurrency", "1"]
        for _ in range(count):
            self.workers.start(argv, self.env, cwd=self.data_dir)
        wait_until(lambda: self._ready_workers() >= count, timeout_s=READY_TIMEOUT_S,
                   what=f"{count} chatedit worker(s) to start", check=self.workers.check_alive)
        time.sleep(SETTLE_S)

    def _ready_workers(self) -> int:
        """Registered workers; on PostgreSQL, only as many as have a LISTEN connection open."""
        registered = self._count("SELECT count(*) FROM workers WHERE stopped_at IS NULL")
        if self.database.is_sqlite:
            return registered
        listening = self._count("SELECT count(*) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND query = 'LISTEN chatedit_jobs'")
        return min(registered, listening)

    def enqueue_batch(self, count: int) -> Batch:
        from jobs.queue import JobSpec

        started = time.perf_counter()
        ids = self.queue.enqueue_many(JobSpec("noop") for _ in range(count))
        return Batch(ids, time.time(), time.perf_counter() - started)

    def enqueue_one(self) -> None:
        job_id = self.queue.enqueue("noop", lane="interactive")
        self._pickup_sent[job_id] = time.time()

    def unfinished(self) -> int:
        return self._count("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")

    def timing(self, batch: Batch) -> BatchTiming:
        import sqlalchemy as sa

        from jobs.queue import jobs_t

        c = jobs_t.c
        with self.database.read() as conn:
            done, first, last = conn.execute(
                sa.select(sa.func.count(), sa.func.min(c.started_at), sa.func.max(c.finished_at))
                .where(c.id.between(min(batch.ids), max(batch.ids)) & (c.status == "succeeded"))
            ).one()
        return BatchTiming(done, first.timestamp(), last.timestamp())

    def pickups(self) -> list[Pickup]:
        """started_at (the worker's clock, at claim) minus created_at (the enqueuer's clock, before its INSERT)."""
        out = []
        for job_id, returned in self._pickup_sent.items():
            job = self.queue.get(job_id)
            if job.started_at is not None:
                out.append(Pickup((job.started_at - job.created_at).total_seconds() * 1000,
                                  (job.started_at.timestamp() - returned) * 1000))
        return out

    def close(self) -> None:
        self.workers.stop()
        self._probe_conn.close()
        self.database.dispose()


@dataclass
class ChatEditSystem:
    name: str
    dialect: str  # "sqlite" | "postgres"
    pg_server: str
    scratch: Path

    @contextmanager
    def deploy(self) -> Iterator[ChatEditDeployment]:
        data_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.scratch))
        with self._database_url(data_dir) as url:
            deployment = ChatEditDeployment(url, data_dir)
            try:
                yield deployment
            finally:
                deployment.close()

    @contextmanager
    def _database_url(self, data_dir: Path) -> Iterator[str]:
        if self.dialect == "sqlite":
            yield f"sqlite:///{data_dir / 'chatedit.db'}"
            return
        with temporary_pg_database(self.pg_server, "chatedit_bench") as url:
            yield url.replace("postgresql://", "postgresql+psycopg://", 1)


class PgQueuerDeployment:
    """PgQueuer's schema on its own database, with worker processes that run this file's PgQueuer worker.

    Every figure comes from PgQueuer's own log table, which records each job's
    'queued', 'picked' and 'successful' moments (the database's NOW(), this host's clock).
    """

    def __init__(self, url: str, work_dir: Path, driver: str) -> None:
        from pgqueuer.db import SyncPsycopgDriver
        from pgqueuer.queries import SyncQueries

        asyncio.run(_install_pgqueuer(url))
        self.url = url
        self.driver = driver
        self.work_dir = work_dir
        self.workers = WorkerProcesses(work_dir)
        self.conn = psycopg.connect(url, autocommit=True)
        self.queries = SyncQueries(SyncPsycopgDriver(self.conn))
        self._sent: dict[int, tuple[float, float]] = {}  # job id -> enqueue() called, returned
        self._started = 0

    def start_workers(self, count: int) -> None:
        ready_files = [self.work_dir / f"ready-{self._started + n}" for n in range(count)]
        for ready in ready_files:
            argv = [sys.executable, str(Path(__file__).resolve()), PGQUEUER_WORKER_ARG, self.url, self.driver,
                    str(ready)]
            self.workers.start(argv, dict(os.environ), cwd=self.work_dir)
        self._started += count
        wait_until(lambda: all(f.exists() for f in ready_files), timeout_s=READY_TIMEOUT_S,
                   what=f"{count} PgQueuer worker(s) to listen", check=self.workers.check_alive)
        time.sleep(SETTLE_S)

    def enqueue_batch(self, count: int) -> Batch:
        started = time.perf_counter()
        ids = self.queries.enqueue(["noop"] * count, [None] * count, [0] * count)
        return Batch([int(i) for i in ids], time.time(), time.perf_counter() - started)

    def enqueue_one(self) -> None:
        called = time.time()
        (job_id,) = self.queries.enqueue("noop", None)
        self._sent[int(job_id)] = (called, time.time())

    def unfinished(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM pgqueuer").fetchone()[0])  # type: ignore[index]

    def timing(self, batch: Batch) -> BatchTiming:
        row = self.conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'successful'),"
            " extract(epoch FROM min(created) FILTER (WHERE status = 'picked')),"
            " extract(epoch FROM max(created) FILTER (WHERE status = 'successful'))"
            " FROM pgqueuer_log WHERE job_id BETWEEN %s AND %s",
            (min(batch.ids), max(batch.ids)),
        ).fetchone()
        assert row is not None
        return BatchTiming(int(row[0]), float(row[1]), float(row[2]))

    def pickups(self) -> list[Pickup]:
        """The dequeue's NOW() ('picked' in the log) minus the moment enqueue() was called.

        Timing from the call, as ChatEdit's created_at is taken before its INSERT, keeps the
        two comparable (PgQueuer's own 'queued' time is later: inside its INSERT).
        """
        rows = self.conn.execute(
            "SELECT job_id, extract(epoch FROM min(created)) FROM pgqueuer_log"
            " WHERE status = 'picked' AND job_id = ANY(%s) GROUP BY job_id",
            (list(self._sent),),
        ).fetchall()
        return [Pickup((float(picked) - self._sent[int(job_id)][0]) * 1000,
                       (float(picked) - self._sent[int(job_id)][1]) * 1000) for job_id, picked in rows]

    def close(self) -> None:
        self.workers.stop()
        self.conn.close()


async def _install_pgqueuer(url: str) -> None:
    """What `pgq install` does: PgQueuer's tables, types, indexes and trigger."""
    from pgqueuer.db import PsycopgDriver
    from pgqueuer.queries import Queries

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Queries(PsycopgDriver(conn)).install()


@dataclass
class PgQueuerSystem:
    name: str
    pg_server: str
    scratch: Path
    driver: str  # "asyncpg" | "psycopg"

    @contextmanager
    def deploy(self) -> Iterator[PgQueuerDeployment]:
        work_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.scratch))
        with temporary_pg_database(self.pg_server, "pgqueuer_bench") as url:
            deployment = PgQueuerDeployment(url, work_dir, self.driver)
            try:
                yield deployment
            finally:
                deployment.close()


def default_pgqueuer_driver() -> str:
    """asyncpg, PgQueuer's first driver, when installed; psycopg's async connection otherwise."""
    return "asyncpg" if importlib.util.find_spec("asyncpg") is not None else "psycopg"


# ---------------------------------------------------------------------------- the PgQueuer worker process


def pgqueuer_worker_main(url: str, driver: str, ready_path: Path) -> None:
    """One PgQueuer worker, as `pgq run` would start it: a no-op entrypoint, default settings, until SIGTERM."""
    import pgqueuer
    from pgqueuer import PgQueuer
    from pgqueuer.models import Job

    @asynccontextmanager
    async def factory() -> AsyncIterator[PgQueuer]:
        conn, pgq = await _connect_pgqueuer(url, driver)

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            pass

        announce = asyncio.create_task(_announce_when_listening(pgq, ready_path))
        try:
            yield pgq
        finally:
            announce.cancel()
            await conn.close()

    _run_like_pgq(pgqueuer.run(factory, batch_size=PGQUEUER_BATCH_SIZE))


async def _connect_pgqueuer(url: str, driver: str) -> tuple[Any, Any]:
    from pgqueuer import PgQueuer

    if driver == "asyncpg":
        import asyncpg
        from pgqueuer import AsyncpgDriver

        conn = await asyncpg.connect(url)
        return conn, PgQueuer(AsyncpgDriver(conn))
    from pgqueuer import PsycopgDriver

    aconn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    return aconn, PgQueuer(PsycopgDriver(aconn))


async def _announce_when_listening(pgq: Any, ready_path: Path) -> None:
    """Touch ready_path once a NOTIFY round trip reaches this worker's listener (PgQueuer's own probe)."""
    from pgqueuer.errors import FailingListenerError

    while True:
        try:
            await pgq.qm.listener_healthy(timeout=timedelta(seconds=0.5))
        except (FailingListenerError, RuntimeError):
            await asyncio.sleep(0.05)
            continue
        ready_path.touch()
        return


def _run_like_pgq(coro: Any) -> None:
    """The event loop `pgq run` uses: uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


# ---------------------------------------------------------------------------- the measurements


def measure_throughput(systems: Sequence[System], workers: int, jobs: int, repeats: int) -> dict[str, list[Drain]]:
    """`repeats` batches of `jobs` per system, each drained by `workers` processes that were already waiting.

    The systems take turns, round by round with the order rotated, so a slow spell of
    this shared machine falls on every system alike rather than on whichever ran then;
    each batch gets a fresh deployment, so no system's idle workers run beside another's.
    """
    drains: dict[str, list[Drain]] = {system.name: [] for system in systems}
    for round_no in range(repeats):
        shift = round_no % len(systems)
        for system in [*systems[shift:], *systems[:shift]]:
            with system.deploy() as deployment:
                deployment.start_workers(workers)
                drains[system.name].append(_drain(system, deployment, jobs))
    return drains


def _drain(system: System, deployment: Deployment, jobs: int) -> Drain:
    batch = deployment.enqueue_batch(jobs)
    wait_until(lambda: deployment.unfinished() == 0, timeout_s=DRAIN_TIMEOUT_S,
               what=f"{jobs} jobs to finish", check=deployment.workers.check_alive)
    timing = deployment.timing(batch)
    if timing.done != jobs:
        raise RuntimeError(f"{system.name}: only {timing.done} of {jobs} jobs succeeded")
    return Drain(jobs=jobs, seconds=timing.last_done - batch.committed_at,
                 wake_ms=max(0.0, timing.first_claim - batch.committed_at) * 1000, enqueue_s=batch.enqueue_s)


def measure_pickup(system: System, jobs: int, gap_s: float) -> list[Pickup]:
    """Enqueue single jobs `gap_s` apart for one idle worker; the pickup latency of each.

    A few jobs go first, uncounted: the first job a worker runs loads its handler, and
    the jobs queued behind it would measure that rather than the wake-up.
    """
    with system.deploy() as deployment:
        deployment.start_workers(1)
        deployment.enqueue_batch(PICKUP_WARMUP_JOBS)
        wait_until(lambda: deployment.unfinished() == 0, timeout_s=DRAIN_TIMEOUT_S,
                   what="the warm-up jobs to finish", check=deployment.workers.check_alive)
        time.sleep(SETTLE_S)
        for _ in range(jobs):
            deployment.enqueue_one()
            time.sleep(gap_s)
        wait_until(lambda: deployment.unfinished() == 0, timeout_s=DRAIN_TIMEOUT_S,
                   what=f"{jobs} jobs to finish", check=deployment.workers.check_alive)
        pickups = deployment.pickups()
    if len(pickups) != jobs:
        raise RuntimeError(f"{system.name}: expected {jobs} pickups, found {len(pickups)}")
    return pickups


# ---------------------------------------------------------------------------- the machine and the report


def machine_info(pg_server: str, pgqueuer_driver: str) -> dict[str, str]:
    """What the figures were measured on (recorded with them in docs/benchmarks.md)."""
    import pgqueuer

    with psycopg.connect(pg_server) as conn:
        pg_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    driver = pgqueuer_driver
    if driver == "asyncpg":
        import asyncpg

        driver += f" {asyncpg.__version__}"
    else:
        driver += f" {psycopg.__version__} (AsyncConnection)"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "memory": _memory_total(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "sqlite": sqlite3.sqlite_version,
        "pgqueuer": f"{pgqueuer.__version__}, driver {driver}",
        "chatedit": _git_describe(),
    }


def _git_describe() -> str:
    """The commit the figures belong to, and whether the work tree differed from it."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=_HERE.parent, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"commit {out}"


def cpu_probe_ms() -> float:
    """A fixed pure-Python loop, timed (best of 5): shows whether the machine's speed drifted during the run."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(range(1_000_000))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _memory_total() -> str:
    kib = _proc_field("/proc/meminfo", "MemTotal")
    return f"{int(kib.split()[0]) / 1024**2:.1f} GiB" if kib else "unknown"


@dataclass
class Report:
    config: dict[str, Any]
    machine: dict[str, str]
    results: dict[str, SystemResult]

    @property
    def worker_counts(self) -> list[int]:
        return sorted(self.results["pgqueuer"].drains)

    def ratios(self) -> dict[str, float]:
        """ChatEdit against PgQueuer in this run; above 1 means ChatEdit does better."""
        pgq = self.results["pgqueuer"]
        out: dict[str, float] = {}
        for name in ("chatedit-postgres", "chatedit-sqlite"):
            r = self.results[name]
            for w in self.worker_counts:
                out[f"{name} jobs/s / pgqueuer jobs/s, {w} worker(s)"] = r.jobs_per_s(w) / pgq.jobs_per_s(w)
            for w in self.worker_counts:
                out[f"{name} steady jobs/s / pgqueuer's, {w} worker(s)"] = (
                    r.steady_jobs_per_s(w) / pgq.steady_jobs_per_s(w))
            out[f"pgqueuer pickup p50 / {name} pickup p50"] = pgq.pickup_ms(0.5) / r.pickup_ms(0.5)
        return out

    def targets(self) -> dict[str, bool]:
        pg, pgq, sq = self.results["chatedit-postgres"], self.results["pgqueuer"], self.results["chatedit-sqlite"]
        most = max(self.worker_counts)
        return {
            "chatedit-postgres jobs/s >= pgqueuer's, every worker count":
                all(pg.jobs_per_s(w) >= pgq.jobs_per_s(w) for w in self.worker_counts),
            "chatedit-postgres pickup p50 <= 5 ms (NOTIFY)": pg.pickup_ms(0.5) <= 5.0,
            f"chatedit-sqlite >= 1,000 jobs/s with {most} workers": sq.jobs_per_s(most) >= 1000.0,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "machine": self.machine,
            "results": {name: r.to_json() for name, r in self.results.items()},
            "ratios": {k: round(v, 3) for k, v in self.ratios().items()},
            "targets": self.targets(),
        }

    def render(self) -> str:
        def plural(w: int) -> str:
            return f"{w} worker{'s' if w > 1 else ''}"

        ws = self.worker_counts
        main = _markdown_table(
            ["system"] + [f"jobs/s, {plural(w)}" for w in ws]
            + ["pickup p50 ms", "pickup p99 ms", "after commit p50 ms", "after commit p99 ms"],
            [[name] + [f"{r.jobs_per_s(w):,.0f}" for w in ws]
             + [f"{f(q):.2f}" for f in (r.pickup_ms, r.after_commit_ms) for q in (0.5, 0.99)]
             for name, r in self.results.items()],
        )
        detail = _markdown_table(
            ["system"] + [f"first claim ms, {plural(w)}" for w in ws] + [f"steady jobs/s, {plural(w)}" for w in ws]
            + ["enqueue jobs/s"],
            [[name] + [f"{r.wake_ms(w):,.1f}" for w in ws] + [f"{r.steady_jobs_per_s(w):,.0f}" for w in ws]
             + [f"{r.enqueue_jobs_per_s():,.0f}"] for name, r in self.results.items()],
        )
        lines = [
            main, "",
            "jobs/s: median batch, commit -> last completion. Pickup: claim minus the enqueue call's start "
            "(ChatEdit: started_at - created_at); after commit: claim minus enqueue's return.", "",
            "Batch detail (medians): commit -> first claim; jobs/s from the first claim on; enqueue of a "
            "batch in one transaction.", "",
            detail, "", "Ratios (same run):",
        ]
        lines += [f"  {name}: {value:.2f}" for name, value in self.ratios().items()]
        lines += ["", "Targets:"]
        lines += [f"  [{'x' if ok else ' '}] {name}" for name, ok in self.targets().items()]
        lines += ["", "Machine:"] + [f"  {key}: {value}" for key, value in self.machine.items()]
        lines += ["", "Settings:"] + [f"  {key}: {value}" for key, value in self.config.items()]
        return "\n".join(lines)


def _markdown_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(head, *rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), rule, *(line(r) for r in rows)])


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/job_queue.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=None,
                        help="jobs per throughput batch (default 2000; 500 with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="batches per worker count; the median counts (default 3; 1 with --quick)")
    parser.add_argument("--pickups", type=int, default=None,
                        help="single jobs for pickup latency (default 300; 100 with --quick)")
    parser.add_argument("--gap-ms", type=float, default=15.0, help="pause between single jobs (default 15)")
    parser.add_argument("--workers", default="1,2", help="worker process counts for throughput (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of well under a minute")
    parser.add_argument("--pgqueuer-driver", choices=["asyncpg", "psycopg"], default=None,
                        help="PgQueuer's driver (default asyncpg when installed, else psycopg)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    parser.add_argument("--pg-server", default=os.environ.get("CHATEDIT_BENCH_PG_URL", DEFAULT_PG_SERVER),
                        help="a PostgreSQL URL whose server gets the temporary databases "
                             "(default $CHATEDIT_BENCH_PG_URL or %(default)s)")
    args = parser.parse_args(argv)
    defaults = {"jobs": (2000, 500), "repeats": (3, 1), "pickups": (300, 100)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.worker_counts = sorted({int(w) for w in args.workers.split(",")})
    args.pgqueuer_driver = args.pgqueuer_driver or default_pgqueuer_driver()
    if args.jobs < 1 or args.repeats < 1 or args.pickups < 1 or min(args.worker_counts) < 1:
        parser.error("--jobs, --repeats, --pickups and --workers must be at least 1")
    return args


def run(args: argparse.Namespace, scratch: Path) -> Report:
    systems: list[System] = [
        ChatEditSystem("chatedit-sqlite", "sqlite", args.pg_server, scratch),
        ChatEditSystem("chatedit-postgres", "postgres", args.pg_server, scratch),
        PgQueuerSystem("pgqueuer", args.pg_server, scratch, args.pgqueuer_driver),
    ]
    results = {system.name: SystemResult(system.name) for system in systems}
    probe_before = cpu_probe_ms()
    for workers in args.worker_counts:
        for name, drains in measure_throughput(systems, workers, args.jobs, args.repeats).items():
            result = results[name]
            result.drains[workers] = drains
            samples = ", ".join(f"{d.jobs_per_s:,.0f}" for d in drains)
            _progress(f"{name}, {workers} worker(s): {result.jobs_per_s(workers):,.0f} jobs/s ({samples})")
    for system in systems:
        result = results[system.name]
        result.pickups = measure_pickup(system, args.pickups, args.gap_ms / 1000)
        _progress(f"{system.name}, pickup: p50 {result.pickup_ms(0.5):.2f} ms, p99 {result.pickup_ms(0.99):.2f} ms "
                  f"(after commit: p50 {result.after_commit_ms(0.5):.2f} ms)")
    config = {
        "jobs": args.jobs, "repeats": args.repeats, "pickups": args.pickups, "gap_ms": args.gap_ms,
        "workers": args.worker_counts,
        "chatedit_worker": "chatedit worker --lanes interactive --concurrency 1 (default settings)",
        "pgqueuer_worker": f"pgqueuer.run(factory, batch_size={PGQUEUER_BATCH_SIZE}), {args.pgqueuer_driver} driver, "
                           "other settings default",
    }
    machine = machine_info(args.pg_server, args.pgqueuer_driver)
    machine["cpu_probe_ms"] = f"{probe_before} at the start, {cpu_probe_ms()} at the end (sum(range(10**6)))"
    return Report(config=config, machine=machine, results=results)


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [PGQUEUER_WORKER_ARG]:
        pgqueuer_worker_main(argv[1], argv[2], Path(argv[3]))
        return 0
    args = parse_args(argv)
    try:
        psycopg.connect(args.pg_server, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        print(f"bench/job_queue.py: cannot reach PostgreSQL at {args.pg_server} ({str(exc).strip().splitlines()[0]}); "
              "start it or pass --pg-server URL.", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so the workers stop and the temporary databases are dropped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    print(f"Queue benchmark: {args.repeats} x {args.jobs} jobs per worker count {args.worker_counts}, "
          f"{args.pickups} pickups; PgQueuer on {args.pgqueuer_driver}", file=sys.stderr, flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    try:
        report = run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(report.render())
    print(f"\n({time.monotonic() - started:.0f} s in all)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
