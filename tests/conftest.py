"""Shared fixtures: every database test runs on a real SQLite file and a real PostgreSQL database.

PostgreSQL is the server at CHATEDIT_TEST_PG_URL (default the local one, trust auth);
each test gets a database of its own, created and dropped here. If the server cannot be
reached the PostgreSQL half fails loudly (CI starts the server first); set
CHATEDIT_TEST_SKIP_POSTGRES=1 to skip it on a machine without one.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

from core.settings import Settings, environment_of, load_settings
from db.migrate import upgrade
from jobs.services import Services
from jobs.worker import Worker

if TYPE_CHECKING:
    from tests.diffusion_support import TinyModels

PG_SERVER_URL = os.environ.get("CHATEDIT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SKIP_PG = os.environ.get("CHATEDIT_TEST_SKIP_POSTGRES") == "1"


@contextmanager
def temporary_pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"chatedit_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_SERVER_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_SERVER_URL} ({exc}); start it or set CHATEDIT_TEST_SKIP_POSTGRES=1")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_SERVER_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_SERVER_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chatedit.db'}"
        return
    if SKIP_PG:
        pytest.skip("CHATEDIT_TEST_SKIP_POSTGRES=1")
    with temporary_pg_database() as url:
        yield url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        job_lease_seconds=2.0,
        worker_heartbeat_seconds=0.3,
        worker_poll_seconds=0.2,
        worker_shutdown_grace_seconds=2.0,
        retry_base_delay_seconds=0.2,
        # The worker tests queue hundreds of jobs as one person; tests/test_fair_use.py tests the limit itself.
        max_queued_jobs_per_person=1000,
        auto_install_segmenter=False,  # `chatedit serve` in a test never downloads the default segmenter
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = Services.from_settings(settings)
    upgrade(svc.database)
    yield svc
    svc.close()


@pytest.fixture
def app_env(settings: Settings, services: Services, monkeypatch: pytest.MonkeyPatch) -> Services:
    """The app reads its settings from the environment, as under `chatedit serve`; same database as `services`."""
    monkeypatch.setenv("CHATEDIT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CHATEDIT_DATABASE_URL", settings.resolved_database_url)
    return services


@pytest.fixture
def worker_env(settings: Settings) -> dict[str, str]:
    """Environment for `chatedit` subprocesses that use the same database and settings as the test."""
    return environment_of(settings)


class ManualClock:
    """A clock the test moves by hand (backoff and lease expiry without sleeping)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


@contextmanager
def services_with(settings: Settings, **overrides: object) -> Iterator[Services]:
    """Services on the same database with some settings changed (e.g. a worker configured unlike the app)."""
    svc = Services.from_settings(settings.model_copy(update=overrides))
    try:
        yield svc
    finally:
        svc.close()


@contextmanager
def running_worker(services: Services, **kwargs: object) -> Iterator[Worker]:
    """A real worker on threads of this process (no signal handlers), stopped at the end."""
    worker = Worker(services, **kwargs)  # type: ignore[arg-type]
    worker.start()
    try:
        yield worker
    finally:
        worker.shutdown()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Tiny random-weight diffusers models saved to disk, built once per test module that asks."""
    from tests.diffusion_support import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def default_segmenter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default segmenter, installed once per session from the cached mediapipe wheel (real weights)."""
    from core.segmentation.default_segmenter import install_default_segmenter
    from tests import real_assets

    real_assets.mediapipe_models()  # skips when PyPI cannot be reached
    return install_default_segmenter(tmp_path_factory.mktemp("default-segmenter"), cache_dir=real_assets.cache_dir(),
                                     progress=lambda _: None)
