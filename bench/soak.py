"""Soak: many jobs, worker processes SIGKILLed at random and restarted, and (PostgreSQL) a server restart.

Usage (from the repository root)::

    .venv/bin/python bench/soak.py --database postgres [--jobs 1000] [--workers 3] [--kill-every 2]
        [--postgres-server private --restart-postgres] [--json PATH]

N jobs are queued at once: ``noop`` jobs that sleep a little, and real classical ``edit``
jobs (recolour, adjust, blur) on a real photo (scikit-image's astronaut when
``tests/real_assets.py`` can fetch it, otherwise a generated photo-like picture), each
adding a step to one history. K ``chatedit worker`` processes run them while, every few
seconds, a random worker (with ``--target-busy``, one running a job of that kind) is
SIGKILLed and a new one started. On PostgreSQL the server can also be restarted once, half-way
(``--restart-postgres``; ``--restart-mode immediate`` is a crash, so completions written
without waiting for the WAL flush may be lost and run again).

Restarting a server stops every other client of it. ``--postgres-server private`` (the
way the test suite runs this) starts a throwaway server of the soak's own (initdb into a
temporary folder, a free port) and restarts that; restarting the shared server
(``--postgres-server shared --restart-postgres``, through ``pg_ctlcluster``) is only for a
machine where nothing else uses it.

It then reads every job back and prints, per outcome: succeeded, failed, stuck (not
finished by the deadline), lost (succeeded, but what it made is missing), how many ran
more than once (allowed: delivery is at-least-once), and how many image rows each edit
job left. The exit code is 1 on any failed, stuck or lost job and on any second output
(a job with two image rows or two steps, or whose result, step and output name different
images), else 0.
"""

# ruff: noqa: E402
# (Most imports follow the sys.path fix below, on purpose.)

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ is first on sys.path; keep it off, and the repository root on.
_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse
import glob
import json
import os
import platform
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.exc import DBAPIError

from core.masks import mask_to_png
from core.recipes import read_recipe
from core.settings import Settings, environment_of, load_settings
from db.migrate import upgrade
from db.models import Image as ImageRow
from db.models import Step
from jobs.edits import EDIT_KIND, EditRequest, lane_for
from jobs.histories import start_history
from jobs.images import store_array
from jobs.queue import JobRecord, JobSpec, JobStatus
from jobs.services import Services

DEFAULT_PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
LANES = "interactive,gpu"
#: Attempts per soak job: a job killed this often in a row is a failure the soak reports.
MAX_ATTEMPTS = 10
#: Worker settings that make a killed worker's job come back within seconds.
WORKER_SETTINGS = {
    "job_lease_seconds": 2.0,
    "worker_heartbeat_seconds": 0.3,
    "worker_poll_seconds": 0.5,
    "worker_shutdown_grace_seconds": 5.0,
    "retry_base_delay_seconds": 0.2,
    "retry_max_delay_seconds": 2.0,
}
EDIT_PROGRAMS: list[list[dict[str, Any]]] = [
    [{"command": "recolor", "paras": [["Selection"], "blue"]}],
    [{"command": "adjust", "paras": ["brightness", 0.3, []]}],
    [{"command": "adjust", "paras": ["warmth", -0.4, ["Selection"]]}],
    [{"command": "blur", "paras": [["Selection"], 0.4]}],
    [{"command": "recolor", "paras": [["Selection"], "white"]}, {"command": "adjust", "paras": ["contrast", 0.2, []]}],
]


def _say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the photo


def synthetic_photo(size: int = 512) -> np.ndarray:
    """A photo-like picture: a lit backdrop, a figure with a face, texture and sensor noise."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    picture = np.stack([90 + 80 * yy, 120 + 40 * xx, 170 - 60 * yy], axis=-1)
    body = ((xx - 0.5) / 0.28) ** 2 + ((yy - 0.85) / 0.35) ** 2 <= 1
    face = ((xx - 0.5) / 0.13) ** 2 + ((yy - 0.4) / 0.17) ** 2 <= 1
    picture[body] = (40, 60, 140)
    picture[face] = (215, 170, 140)
    picture += 18 * np.sin(xx[..., None] * 90) * np.cos(yy[..., None] * 70)
    picture = cv2.GaussianBlur(picture, (0, 0), 1.2)
    return np.clip(picture + rng.normal(0, 5, picture.shape), 0, 255).astype(np.uint8)


def soak_photo(size: int | None) -> tuple[np.ndarray, str]:
    """The astronaut portrait when the test assets can be had, else the synthetic photo; (pixels, name)."""
    photo, name = None, "synthetic"
    try:
        from tests.real_assets import astronaut_rgb
    except ImportError:
        astronaut_rgb = None
    if astronaut_rgb is not None:
        try:
            photo, name = astronaut_rgb(), "astronaut"
        except Exception as exc:  # noqa: BLE001 - any reason it cannot be fetched: use the synthetic photo
            _say(f"the astronaut photo is unavailable ({type(exc).__name__}); using a synthetic one")
        except BaseException as exc:  # pytest.skip() when a registry cannot be reached
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            _say("the astronaut photo cannot be fetched; using a synthetic one")
    if photo is None:
        photo = synthetic_photo(size or 512)
    if size and max(photo.shape[:2]) != size:
        scale = size / max(photo.shape[:2])
        photo = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(photo), name


def selection_mask(shape: tuple[int, int]) -> np.ndarray:
    """An ellipse over the upper middle of the picture (the face, in a portrait)."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    return ((xx - 0.5 * width) / (0.2 * width)) ** 2 + ((yy - 0.35 * height) / (0.25 * height)) ** 2 <= 1


# ---------------------------------------------------------------------------- PostgreSQL servers


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_bin(name: str) -> str:
    """A PostgreSQL server program: the newest Debian install, else the one on PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"The PostgreSQL program {name} is not installed.")
    return path


class PrivatePostgres:
    """A throwaway PostgreSQL server of the soak's own: restarting it disturbs no one else.

    The server refuses to run as root, so under root it runs as the ``postgres`` user.
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chatedit-soak-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    @classmethod
    def available(cls) -> bool:
        """Whether this machine can run a private server (its programs, and a user to run it as)."""
        try:
            _postgres_bin("initdb")
            _postgres_bin("pg_ctl")
            if os.geteuid() == 0:
                pwd.getpwnam("postgres")
        except (FileNotFoundError, KeyError):
            return False
        return True

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} {args[-1]} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def start(self) -> str:
        self._run(_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self._pg_ctl("start")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, action: str, mode: str = "fast") -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        args = [_postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60"]
        if action in ("stop", "restart"):
            args += ["-m", mode]
        if action in ("start", "restart"):
            args += ["-o", options]
        self._run(*args, action)

    def restart(self, mode: str) -> None:
        self._pg_ctl("restart", mode)

    def close(self) -> None:
        try:
            self._pg_ctl("stop", "immediate")
        except (RuntimeError, subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def restart_shared_cluster(cluster: str, mode: str) -> None:
    """Restart the machine's cluster (``15/main``): every client of that server loses its connections."""
    version, name = cluster.split("/", 1)
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", "-m", mode, version, name, "restart"], check=True,
                   timeout=120)


@contextmanager
def temporary_pg_database(server_url: str) -> Iterator[str]:
    """A database made for the soak on ``server_url``; yields its SQLAlchemy URL, drops it afterwards."""
    name = f"chatedit_soak_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = server_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        for _ in range(30):  # the server may still be coming back from its restart
            try:
                with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as admin:
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                break
            except psycopg.OperationalError:
                time.sleep(1.0)


# ---------------------------------------------------------------------------- workers and chaos


class WorkerPool:
    """K ``chatedit worker`` processes; any of them can be SIGKILLed and replaced."""

    def __init__(self, env: dict[str, str], logs: Path, count: int) -> None:
        self.env, self.logs, self.count = env, logs, count
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0
        self.kills = 0

    def start(self) -> None:
        for _ in range(self.count):
            self._spawn()

    def _spawn(self) -> str:
        name = f"soak-w{self.started}"
        self.started += 1
        with (self.logs / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--lanes", LANES, "--name", name],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        return name

    def kill_one(self, prefer: set[str], rng: random.Random) -> str:
        """SIGKILL a worker (one of ``prefer`` when any of them is alive) and start its replacement."""
        alive = [name for name, proc in self.procs.items() if proc.poll() is None]
        busy = [name for name in alive if name in prefer]
        victim = rng.choice(busy or alive or list(self.procs))
        proc = self.procs.pop(victim)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self.kills += 1
        self._spawn()
        return victim

    def stop(self) -> list[int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs.values():
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(None)
        return codes


def _retrying(read: Callable[[], Any], attempts: int = 60) -> Any:
    """A read by the soak itself, tried again while the database comes back from a restart."""
    for attempt in range(attempts):
        try:
            return read()
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- the report


@dataclass
class Report:
    database: str
    server: str
    jobs: int
    edits: int
    noops: int
    workers: int
    photo: str
    photo_shape: list[int]
    seconds: float = 0.0
    kills: int = 0
    server_restarts: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    stuck: int = 0
    lost: int = 0
    ran_more_than_once: int = 0
    ran_more_than_once_edits: int = 0
    most_attempts: int = 0
    image_rows_per_edit_job: dict[str, int] = field(default_factory=dict)
    edit_jobs_with_two_images: int = 0
    edit_jobs_with_two_steps: int = 0
    edit_jobs_naming_different_images: int = 0
    stray_image_rows: int = 0
    problems: list[str] = field(default_factory=list)
    machine: str = ""

    @property
    def second_outputs(self) -> int:
        return (self.edit_jobs_with_two_images + self.edit_jobs_with_two_steps + self.edit_jobs_naming_different_images
                + self.stray_image_rows)

    @property
    def ok(self) -> bool:
        return self.failed + self.cancelled + self.stuck + self.lost + self.second_outputs == 0

    def text(self) -> str:
        restarts = f", {self.server_restarts} server restart(s)" if self.database == "postgres" else ""
        per_job = ", ".join(f"{n} row(s): {count} job(s)" for n, count in sorted(self.image_rows_per_edit_job.items()))
        lines = [
            (f"Soak on {self.database} ({self.server}): {self.jobs} jobs ({self.edits} edits on the {self.photo} photo "
             f"{self.photo_shape[1]}×{self.photo_shape[0]}, {self.noops} noops), {self.workers} workers, "
             f"{self.kills} SIGKILLs{restarts}, {self.seconds:.1f} s"),
            (f"  succeeded {self.succeeded}, failed {self.failed}, cancelled {self.cancelled}, stuck {self.stuck}, "
             f"lost {self.lost}"),
            (f"  ran more than once {self.ran_more_than_once} (edits {self.ran_more_than_once_edits}), "
             f"most attempts {self.most_attempts}"),
            (f"  image rows per edit job: {per_job or 'none'}; two images {self.edit_jobs_with_two_images}, "
             f"two steps {self.edit_jobs_with_two_steps}, result/step/output disagree "
             f"{self.edit_jobs_naming_different_images}, stray image rows {self.stray_image_rows}"),
            "  OK" if self.ok else "  FAILED",
        ]
        lines += [f"  - {problem}" for problem in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"  - ... and {len(self.problems) - 20} more")
        return "\n".join(lines)


def check(services: Services, report: Report, jobs: dict[int, dict[str, Any]], source_image_id: int) -> None:
    """Read every job and every image back and fill in the report's outcomes."""
    queue = services.queue
    records: dict[int, JobRecord] = {job_id: queue.get(job_id) for job_id in jobs}
    for job_id, job in records.items():
        expected = jobs[job_id]
        report.most_attempts = max(report.most_attempts, job.attempts)
        if job.attempts > 1:
            report.ran_more_than_once += 1
            report.ran_more_than_once_edits += job.kind == EDIT_KIND
        if not job.terminal:
            report.stuck += 1
            report.problems.append(f"job {job_id} ({job.kind}) is still {job.status.value}")
        elif job.status is JobStatus.SUCCEEDED:
            report.succeeded += 1
        elif job.status is JobStatus.FAILED:
            report.failed += 1
            report.problems.append(f"job {job_id} ({job.kind}) failed: {job.error_type}: {job.error_message}")
        else:
            report.cancelled += 1
            report.problems.append(f"job {job_id} ({job.kind}) was cancelled")
        if job.status is JobStatus.SUCCEEDED and job.kind == "noop" and (job.result or {}).get("echo") != expected["echo"]:
            report.lost += 1
            report.problems.append(f"noop job {job_id} succeeded without its result: {job.result!r}")

    with services.database.read() as conn:
        steps = conn.execute(sa.select(Step.job_id, Step.image_id).where(Step.job_id.is_not(None))).all()
        images = conn.execute(sa.select(ImageRow.id, ImageRow.blob_key)).all()
    steps_of: dict[int, list[int | None]] = {}
    for job_id, image_id in steps:
        steps_of.setdefault(job_id, []).append(image_id)
    images_of: dict[int, list[int]] = {}
    image_by_key = {key: image_id for image_id, key in images}
    for image_id, key in images:
        if image_id == source_image_id:
            continue
        recipe = read_recipe(services.blobs.get(key)) or {}
        owner = recipe.get("job_id")
        if owner in jobs:
            images_of.setdefault(owner, []).append(image_id)
        else:
            report.stray_image_rows += 1
            report.problems.append(f"image {image_id} belongs to no soak job (recipe job {owner!r})")

    rows_per_job: Counter[int] = Counter()
    for job_id, job in records.items():
        if job.kind != EDIT_KIND:
            continue
        mine = images_of.get(job_id, [])
        rows_per_job[len(mine)] += 1
        if len(mine) > 1:
            report.edit_jobs_with_two_images += 1
            report.problems.append(f"edit job {job_id} left {len(mine)} image rows: {sorted(mine)}")
        if len(steps_of.get(job_id, [])) > 1:
            report.edit_jobs_with_two_steps += 1
            report.problems.append(f"edit job {job_id} made {len(steps_of[job_id])} steps")
        if job.status is not JobStatus.SUCCEEDED:
            continue
        output = queue.output(job_id, "image")
        step_images = steps_of.get(job_id, [])
        result_image = (job.result or {}).get("image_id")
        if output is None or not step_images or result_image is None or not mine:
            report.lost += 1
            report.problems.append(f"edit job {job_id} succeeded but its output {output is not None}, step "
                                   f"{bool(step_images)}, result image {result_image} or image row {bool(mine)} is missing")
            continue
        named = {result_image, image_by_key.get(output.blob_key), *step_images}
        if len(named) != 1:
            report.edit_jobs_naming_different_images += 1
            report.problems.append(f"edit job {job_id}: result image {result_image}, output image "
                                   f"{image_by_key.get(output.blob_key)}, step images {step_images}")
    report.image_rows_per_edit_job = {str(n): count for n, count in sorted(rows_per_job.items())}


# ---------------------------------------------------------------------------- the run


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=1000, help="Jobs in all (default 1000).")
    parser.add_argument("--edit-share", type=float, default=0.3, help="Share of edit jobs (default 0.3).")
    parser.add_argument("--workers", type=int, default=3, help="Worker processes (default 3).")
    parser.add_argument("--kill-every", type=float, default=2.0,
                        help="Mean seconds between SIGKILLs (uniform from half to one and a half times this).")
    parser.add_argument("--target-busy", choices=("edit", "noop"), default=None,
                        help="Kill a worker running a job of this kind when there is one (default: any worker).")
    parser.add_argument("--noop-sleep", type=float, default=0.2, help="Longest sleep of a noop job (seconds).")
    parser.add_argument("--photo-size", type=int, default=None, help="Scale the photo to this long side.")
    parser.add_argument("--postgres-server", choices=("shared", "private"), default="shared",
                        help="shared: a database on --pg-server; private: a throwaway server of the soak's own.")
    parser.add_argument("--pg-server", default=os.environ.get("CHATEDIT_TEST_PG_URL", DEFAULT_PG_SERVER),
                        help="The shared PostgreSQL server (maintenance database URL).")
    parser.add_argument("--restart-postgres", action="store_true",
                        help="Restart the PostgreSQL server once, half-way (shared: through pg_ctlcluster; "
                             "only where nothing else uses that server).")
    parser.add_argument("--cluster", default="15/main", help="The shared server's cluster, for --restart-postgres.")
    parser.add_argument("--restart-mode", choices=("fast", "immediate"), default="immediate",
                        help="How the server stops before it starts again (immediate: a crash).")
    parser.add_argument("--timeout", type=float, default=None, help="Give up after this many seconds.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="Also write the report as JSON here.")
    parser.add_argument("--logs", type=Path, default=None, help="Keep the workers' logs in this folder.")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.kill_every <= 0 or not 0 <= args.edit_share <= 1:
        parser.error("--jobs and --workers must be at least 1, --kill-every above 0, --edit-share from 0 to 1.")
    if args.restart_postgres and args.database != "postgres":
        parser.error("--restart-postgres needs --database postgres.")
    return args


def soak_settings(database_url: str, data_dir: Path) -> Settings:
    # The soak queues all its jobs at once as one person: no per-person limit.
    return load_settings(data_dir=data_dir, database_url=database_url, job_max_attempts=MAX_ATTEMPTS,
                         max_queued_jobs_per_person=0, **WORKER_SETTINGS)


def worker_env(settings: Settings) -> dict[str, str]:
    env = environment_of(settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def queue_jobs(services: Services, args: argparse.Namespace, rng: random.Random,
               photo: np.ndarray) -> tuple[dict[int, dict[str, Any]], int]:
    """The soak's jobs, queued at once in random order; returns {job id: what it should give} and the source image."""
    source = store_array(services, photo)
    history = start_history(services, source.id, title="soak")
    selection = services.blobs.put(mask_to_png(selection_mask(photo.shape[:2])))
    edits = round(args.jobs * args.edit_share)
    kinds = [EDIT_KIND] * edits + ["noop"] * (args.jobs - edits)
    rng.shuffle(kinds)
    specs, expected = [], []
    for n, kind in enumerate(kinds):
        if kind == EDIT_KIND:
            commands = rng.choice(EDIT_PROGRAMS)
            request = EditRequest(image_id=source.id, commands=commands, history_id=history.history_id,
                                  parent_step_id=history.root_step_id, selection_key=selection)
            payload = json.loads(json.dumps(request.to_payload()))
            specs.append(JobSpec(EDIT_KIND, payload, lane=lane_for(commands, services.settings),
                                 max_attempts=MAX_ATTEMPTS))
            expected.append({"kind": EDIT_KIND})
        else:
            payload = {"sleep_s": round(rng.uniform(0.0, args.noop_sleep), 3), "echo": n}
            specs.append(JobSpec("noop", payload, max_attempts=MAX_ATTEMPTS))
            expected.append({"kind": "noop", "echo": n})
    ids: list[int] = []
    for start in range(0, len(specs), 200):
        ids += services.queue.enqueue_many(specs[start:start + 200])
    return dict(zip(ids, expected, strict=True)), source.id


def run(args: argparse.Namespace, scratch: Path) -> Report:
    rng = random.Random(args.seed)
    photo, photo_name = soak_photo(args.photo_size)
    with ExitStack() as stack:
        server = "a SQLite file"
        private: PrivatePostgres | None = None
        if args.database == "sqlite":
            url = f"sqlite:///{scratch / 'soak.db'}"
        elif args.postgres_server == "private":
            private = PrivatePostgres()
            stack.callback(private.close)
            url = stack.enter_context(temporary_pg_database(private.start()))
            server = "a private server"
        else:
            url = stack.enter_context(temporary_pg_database(args.pg_server))
            server = "the shared server"
        settings = soak_settings(url, scratch / "data")
        services = Services.from_settings(settings)
        stack.callback(services.close)
        upgrade(services.database)
        jobs, source_id = queue_jobs(services, args, rng, photo)
        edits = sum(1 for job in jobs.values() if job["kind"] == EDIT_KIND)
        report = Report(database=args.database, server=server, jobs=len(jobs), edits=edits, noops=len(jobs) - edits,
                        workers=args.workers, photo=photo_name, photo_shape=list(photo.shape[:2]))
        _say(f"{len(jobs)} jobs queued ({edits} edits); starting {args.workers} workers on {args.database}")

        logs = args.logs or scratch / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        pool = WorkerPool(worker_env(settings), logs, args.workers)
        timeout = args.timeout or max(300.0, 1.5 * len(jobs))
        started = time.monotonic()
        deadline = started + timeout
        pool.start()
        try:
            next_kill = started + rng.uniform(0.5, 1.5) * args.kill_every
            restarted = not args.restart_postgres
            while time.monotonic() < deadline:
                counts = _retrying(services.queue.counts)
                finished = sum(n for (_, status), n in counts.items() if JobStatus(status).terminal)
                if finished >= len(jobs):
                    break
                if not restarted and finished >= len(jobs) // 2:
                    _say(f"{finished} jobs finished; restarting the PostgreSQL server ({args.restart_mode})")
                    if private is not None:
                        private.restart(args.restart_mode)
                    else:
                        restart_shared_cluster(args.cluster, args.restart_mode)
                    report.server_restarts += 1
                    restarted = True
                if time.monotonic() >= next_kill:
                    busy: set[str] = set()
                    if args.target_busy:
                        running = _retrying(lambda: services.queue.list(status="running", kind=args.target_busy))
                        busy = {job.lease_owner for job in running if job.lease_owner}
                    victim = pool.kill_one(busy, rng)
                    _say(f"SIGKILL {victim} ({finished}/{len(jobs)} finished)")
                    next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * args.kill_every
                time.sleep(0.1)
        finally:
            codes = pool.stop()
        report.seconds = round(time.monotonic() - started, 1)
        report.kills = pool.kills
        if any(code not in (0, None) for code in codes):
            _say(f"workers exited with {codes}")
        check(services, report, jobs, source_id)
        report.machine = machine()
        return report


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"{os.cpu_count()} cores {platform.machine()} ({cpu}), Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="chatedit-soak-") as tmp:
        report = run(args, Path(tmp))
    print(report.text())
    if args.json is not None:
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok, "second_outputs": report.second_outputs},
                                        indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
