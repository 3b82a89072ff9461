"""Bad configuration is one sentence, and nothing hangs or looks alive while dead.

Each bad setting runs `chatedit init` and `chatedit jobs list` and must end with exit code
1 or 2, one sentence on stderr that names what to fix, and no traceback. Hangs are run
in subprocesses with a generous bound, so a regression fails instead of stalling the suite.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image

from app.cli import cli
from core.settings import Settings
from db.blobs import FsBlobStore, StorageFull
from jobs.context import JobContext
from jobs.queue import JobStatus
from jobs.registry import HandlerRegistry
from jobs.services import Services
from jobs.worker import EXIT_REPLACE_ME, Worker
from tests.conftest import running_worker

#: name → (environment, what the sentence must name); paths use {tmp}, filled in per test.
BAD_SETTINGS: dict[str, tuple[dict[str, str], str]] = {
    "url with an unclosed IPv6 bracket": (
        {"CHATEDIT_DATABASE_URL": "postgresql+psycopg://u:s3cret@[::1:5432/db"}, "CHATEDIT_DATABASE_URL"),
    "url with a port that is no number": (
        {"CHATEDIT_DATABASE_URL": "postgresql+psycopg://u:s3cret@db.example:fivefour/db"}, "CHATEDIT_DATABASE_URL"),
    "url with a port out of range": ({"CHATEDIT_DATABASE_URL": "postgresql://u@h:99999/db"}, "CHATEDIT_DATABASE_URL"),
    "url with port zero": ({"CHATEDIT_DATABASE_URL": "postgresql://u@h:0/db"}, "CHATEDIT_DATABASE_URL"),
    "url of an unknown database": ({"CHATEDIT_DATABASE_URL": "mysql://u@h/db"}, "CHATEDIT_DATABASE_URL"),
    "sqlite url without a file": ({"CHATEDIT_DATABASE_URL": "sqlite://"}, "CHATEDIT_DATABASE_URL"),
    "sqlite url at an image file": ({"CHATEDIT_DATABASE_URL": "sqlite:///{tmp}/photo.png"}, "CHATEDIT_DATABASE_URL"),
    "sqlite url at a folder": ({"CHATEDIT_DATABASE_URL": "sqlite:///{tmp}"}, "CHATEDIT_DATABASE_URL"),
    "sqlite url in a missing /proc path": (
        {"CHATEDIT_DATABASE_URL": "sqlite:////proc/no-such-process/chatedit.db"}, "CHATEDIT_DATABASE_URL"),
    "data dir that is a file": ({"CHATEDIT_DATA_DIR": "{tmp}/photo.png"}, "CHATEDIT_DATA_DIR"),
    "data dir that cannot be created": ({"CHATEDIT_DATA_DIR": "/proc/no-such-process/data"}, "CHATEDIT_DATA_DIR"),
    "malformed toml": ({"CHATEDIT_CONFIG": "{tmp}/broken.toml"}, "broken.toml is not valid TOML"),
    "toml that is a folder": ({"CHATEDIT_CONFIG": "{tmp}"}, "CHATEDIT_CONFIG"),
    "toml that is not UTF-8": ({"CHATEDIT_CONFIG": "{tmp}/latin1.toml"}, "latin1.toml cannot be read"),
    "toml with a port that is text": ({"CHATEDIT_CONFIG": "{tmp}/typed.toml"}, "CHATEDIT_PORT"),
    "infinite lease": ({"CHATEDIT_JOB_LEASE_SECONDS": "inf"}, "CHATEDIT_JOB_LEASE_SECONDS"),
    "nan heartbeat": ({"CHATEDIT_WORKER_HEARTBEAT_SECONDS": "nan"}, "CHATEDIT_WORKER_HEARTBEAT_SECONDS"),
    "heartbeat longer than the lease": (
        {"CHATEDIT_JOB_LEASE_SECONDS": "5", "CHATEDIT_WORKER_HEARTBEAT_SECONDS": "10"}, "CHATEDIT_JOB_LEASE_SECONDS"),
    "absurd lease": ({"CHATEDIT_JOB_LEASE_SECONDS": "1e12"}, "CHATEDIT_JOB_LEASE_SECONDS"),
    "negative poll": ({"CHATEDIT_WORKER_POLL_SECONDS": "-1"}, "CHATEDIT_WORKER_POLL_SECONDS"),
    "absurd attempts": ({"CHATEDIT_JOB_MAX_ATTEMPTS": "1000000000"}, "CHATEDIT_JOB_MAX_ATTEMPTS"),
    "retry max below base": (
        {"CHATEDIT_RETRY_BASE_DELAY_SECONDS": "10", "CHATEDIT_RETRY_MAX_DELAY_SECONDS": "1"},
        "CHATEDIT_RETRY_MAX_DELAY_SECONDS"),
    "busy timeout that is no number": ({"CHATEDIT_SQLITE_BUSY_TIMEOUT_MS": "soon"}, "CHATEDIT_SQLITE_BUSY_TIMEOUT_MS"),
    "zero connect timeout": (
        {"CHATEDIT_DATABASE_CONNECT_TIMEOUT_SECONDS": "0"}, "CHATEDIT_DATABASE_CONNECT_TIMEOUT_SECONDS"),
    "infinite statement timeout": (
        {"CHATEDIT_DATABASE_STATEMENT_TIMEOUT_SECONDS": "inf"}, "CHATEDIT_DATABASE_STATEMENT_TIMEOUT_SECONDS"),
    "datasets that are not JSON": ({"CHATEDIT_EVAL_DATASETS": "{nope"}, "CHATEDIT_EVAL_DATASETS"),
    "dataset name with a slash": ({"CHATEDIT_EVAL_DATASETS": '{"a/b": "x.json"}'}, "CHATEDIT_EVAL_DATASETS"),
    "unknown blob store": ({"CHATEDIT_BLOB_STORE": "s3"}, "CHATEDIT_BLOB_STORE"),
    "port out of range": ({"CHATEDIT_PORT": "70000"}, "CHATEDIT_PORT"),
    "upload cap of a petabyte": ({"CHATEDIT_MAX_UPLOAD_BYTES": str(2**50)}, "CHATEDIT_MAX_UPLOAD_BYTES"),
    "unknown log level": ({"CHATEDIT_LOG_LEVEL": "LOUD"}, "CHATEDIT_LOG_LEVEL"),
}


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str | None]:
    """No CHATEDIT_* from the test's own environment; a data dir and SQLite file under ``tmp_path``."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("CHATEDIT_")}
    env.update(CHATEDIT_DATA_DIR=str(tmp_path / "data"), CHATEDIT_DATABASE_URL=f"sqlite:///{tmp_path / 'ok.db'}")
    env.update(extra)
    return env


def _sentence_only(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"one sentence expected, got: {stderr!r}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def hostile_files(tmp_path: Path) -> Path:
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (tmp_path / "broken.toml").write_text('data_dir = "unterminated\nport = \n')
    (tmp_path / "latin1.toml").write_bytes('data_dir = "caf\u00e9"\n'.encode("latin-1"))
    (tmp_path / "typed.toml").write_text('port = "eighty"\n')
    return tmp_path


@pytest.mark.parametrize("command", [["init"], ["jobs", "list"]], ids=["init", "jobs-list"])
@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_a_bad_setting_is_one_sentence_naming_it(hostile_files: Path, case: str, command: list[str]) -> None:
    settings, named = BAD_SETTINGS[case]
    env = _clean_env(hostile_files, **{k: v.replace("{tmp}", str(hostile_files)) for k, v in settings.items()})
    result = CliRunner().invoke(cli, command, env=env, catch_exceptions=False)
    assert result.exit_code in (1, 2), result.output
    sentence = _sentence_only(result.stderr)
    assert named in sentence
    assert "s3cret" not in result.output, "a password in a URL is never shown"


# ---------------------------------------------------------------------------- passwords


def test_a_password_in_the_openai_base_url_is_never_shown(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on: the connection is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = _clean_env(tmp_path, CHATEDIT_OPENAI_BASE_URL=f"http://planner:s3cret@127.0.0.1:{port}/v1",
                     CHATEDIT_OPENAI_MODEL="m", CHATEDIT_OPENAI_MAX_RETRIES="0")
    result = CliRunner().invoke(cli, ["plan", "--planner", "openai", "make it brighter"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 1
    sentence = _sentence_only(result.stderr)
    assert f"http://127.0.0.1:{port}/v1" in sentence and "s3cret" not in result.output


def test_a_password_in_the_database_url_is_never_shown(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, CHATEDIT_DATABASE_URL="postgresql+psycopg://chatedit:s3cret@127.0.0.1:1/none")
    for command in (["init"], ["jobs", "list"]):
        result = CliRunner().invoke(cli, command, env=env, catch_exceptions=False)
        assert result.exit_code == 1 and "s3cret" not in result.output
        assert "127.0.0.1:1/none" in _sentence_only(result.stderr)


# ---------------------------------------------------------------------------- a full disk


def test_a_full_disk_under_the_blob_store_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FsBlobStore(tmp_path / "blobs")

    def onto_a_full_disk(**_: object) -> tuple[int, str]:  # /dev/full: every write ends in ENOSPC
        return os.open("/dev/full", os.O_WRONLY), str(tmp_path / "blobs" / "tmp" / "x.part")

    monkeypatch.setattr("db.blobs.tempfile.mkstemp", onto_a_full_disk)
    with pytest.raises(StorageFull) as info:
        store.put(b"the bytes of an image")
    assert info.value.errno == errno.ENOSPC
    assert str(info.value).startswith(f"The disk holding the blob store {tmp_path / 'blobs'} is full")
    assert not store.exists("0" * 64)


def test_a_full_sqlite_database_says_the_disk_is_full(services: Services, worker_env: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not services.database.is_sqlite:
        pytest.skip("SQLite's page limit stands in for a full disk")
    from db import engine as engine_module

    install = engine_module._install_sqlite_pragmas

    def with_no_room(engine: sa.Engine, url_text: str, busy_timeout_ms: int) -> None:
        install(engine, url_text, busy_timeout_ms)

        @sa.event.listens_for(engine, "connect")
        def _no_more_pages(dbapi_conn: object, _record: object) -> None:
            cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
            pages = cur.execute("PRAGMA page_count").fetchone()[0]
            cur.execute(f"PRAGMA max_page_count={pages}")
            cur.close()

    monkeypatch.setattr(engine_module, "_install_sqlite_pragmas", with_no_room)
    payload = '{"echo": "%s"}' % ("x" * 200_000)
    result = CliRunner().invoke(cli, ["jobs", "submit", "noop", "--payload", payload], env=worker_env,
                                catch_exceptions=False)
    assert result.exit_code == 1
    sentence = _sentence_only(result.stderr)
    assert "is full" in sentence and "server is running" not in sentence


# ---------------------------------------------------------------------------- nothing hangs


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize("command", [["init"], ["jobs", "list"], ["worker"]], ids=["init", "jobs-list", "worker"])
def test_a_database_server_that_never_answers_is_a_sentence_not_a_hang(silent_server: int, tmp_path: Path,
                                                                       command: list[str]) -> None:
    env = {k: v for k, v in _clean_env(tmp_path).items() if v is not None}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CHATEDIT_")}, **env,
           "CHATEDIT_DATABASE_URL": f"postgresql+psycopg://chatedit:s3cret@127.0.0.1:{silent_server}/chatedit",
           "CHATEDIT_DATABASE_CONNECT_TIMEOUT_SECONDS": "2"}
    try:
        done = subprocess.run([sys.executable, "-m", "app.cli", *command], env=env, capture_output=True, text=True,
                              timeout=90, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`chatedit {' '.join(command)}` hung on a server that never answers")
    assert done.returncode == 1
    sentence = _sentence_only(done.stderr)
    assert "connection timeout expired" in sentence and "CHATEDIT_DATABASE_CONNECT_TIMEOUT_SECONDS" in sentence
    assert "s3cret" not in done.stderr


def _photo(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 32, 3), 90, dtype=np.uint8)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def _edit(env: dict[str, str], tmp_path: Path) -> Callable[[], object]:
    source = _photo(tmp_path / "in.png")

    def run() -> object:
        return CliRunner().invoke(cli, ["edit", str(source), "--commands",
                                        '[{"command": "adjust", "paras": ["brightness", 0.2, []]}]',
                                        "-o", str(tmp_path / "out.png"), "--timeout", "60"],
                                  env=env, catch_exceptions=False)
    return run


def test_edit_runs_its_own_worker_when_the_only_worker_stopped_heartbeating(settings: Settings, services: Services,
                                                                           worker_env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    # Settings where 3 heartbeats outlast the lease: a worker silent for longer than the lease is dead.
    env = {**worker_env, "CHATEDIT_JOB_LEASE_SECONDS": "30", "CHATEDIT_WORKER_HEARTBEAT_SECONDS": "20"}
    services.queue.register_worker("ghost", host="gone", pid=1, lanes=["interactive", "gpu", "batch"], concurrency=1)
    from datetime import timedelta

    from db.types import utcnow
    from jobs.queue import workers_t

    with services.database.write() as conn:
        conn.execute(sa.update(workers_t).values(heartbeat_at=utcnow() - timedelta(seconds=45)))
    result = _edit(env, tmp_path)()
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert (tmp_path / "out.png").is_file()


def test_edit_runs_its_own_worker_when_the_live_worker_dies_while_it_waits(settings: Settings, services: Services,
                                                                           worker_env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    # A worker that registered just now (alive when the job is queued) and then never heartbeats again (killed).
    env = {**worker_env, "CHATEDIT_JOB_LEASE_SECONDS": "10", "CHATEDIT_WORKER_HEARTBEAT_SECONDS": "2"}
    services.queue.register_worker("dies-soon", host="here", pid=1, lanes=["interactive", "gpu", "batch"],
                                   concurrency=1)
    result = _edit(env, tmp_path)()
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert (tmp_path / "out.png").is_file()


def _overruns(ctx: JobContext) -> None:
    """A handler that would run for ever, checking in as a handler should."""
    while True:
        ctx.progress(0.5, "still going")
        time.sleep(0.05)


def test_a_job_past_its_kinds_limit_fails_and_the_worker_goes_on(services: Services) -> None:
    registry = HandlerRegistry()
    registry.register("overruns", _overruns, max_run_s=0.5)
    queue = services.queue
    overrun = queue.enqueue("overruns")
    with running_worker(services, lanes=["interactive"], registry=registry) as worker:
        job = queue.wait(overrun, timeout_s=30)
        after = queue.wait(queue.enqueue("noop", {"echo": "next"}), timeout_s=30)
    assert (job.status, job.attempts, job.error_type) == (JobStatus.FAILED, 1, "JobTimedOut")
    assert job.error_message == "The overruns job ran longer than its limit of 0.5 s and was stopped; it is not retried."
    assert after.status is JobStatus.SUCCEEDED, "the slot is free again"
    assert not worker.stuck.is_set()


def test_a_handler_that_ignores_its_stop_gets_its_worker_process_replaced(services: Services) -> None:
    let_go = threading.Event()

    def ignores_everything(ctx: JobContext) -> dict[str, str]:
        let_go.wait(120)  # stands for C code that never returns to Python
        return {}

    registry = HandlerRegistry()
    registry.register("ignores", ignores_everything, max_run_s=0.3)
    stuck = services.queue.enqueue("ignores")
    worker = Worker(services, lanes=["interactive"], registry=registry)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run(install_signal_handlers=False)), daemon=True)
    thread.start()
    try:
        thread.join(timeout=90)
    finally:
        let_go.set()
    assert codes == [EXIT_REPLACE_ME], "the worker exits for a fresh process instead of heartbeating with a dead slot"
    job = services.queue.get(stuck)
    assert (job.status, job.error_type) == (JobStatus.FAILED, "JobTimedOut")
    (record,) = services.queue.workers()
    assert record.stopped_at is not None, "and says it stopped"
