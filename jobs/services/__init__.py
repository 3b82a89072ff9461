"""The service door: what every client (pages, CLI, HTTP API) calls to submit and watch work and
to read or change histories, steps, reviews and accounts, under one permission check.

``Services`` (this module) is the database, blob store and queue built from Settings, shared by
workers, the CLI and the app. The door's modules: ``permissions`` (the one table and ``require``),
``accounts`` (people, passwords, sessions, audit), ``access`` (who may read or change a history,
who may submit), ``sign_in`` (local and OIDC sign-in) and ``reviews`` (decisions and comments on steps).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings
from db.blobs import BlobStore, make_blob_store
from db.engine import Database
from jobs.queue import JobQueue, RetryPolicy


@dataclass
class Services:
    settings: Settings
    database: Database
    blobs: BlobStore
    queue: JobQueue

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int = 5) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(
            settings.resolved_database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=pool_size,
            connect_timeout_s=settings.database_connect_timeout_seconds,
            statement_timeout_s=settings.database_statement_timeout_seconds,
        )
        policy = RetryPolicy(base_delay_s=settings.retry_base_delay_seconds, max_delay_s=settings.retry_max_delay_seconds)
        queue = JobQueue(database, policy=policy, default_max_attempts=settings.job_max_attempts,
                         max_queued_per_owner=settings.max_queued_jobs_per_person)
        blobs = make_blob_store(settings.blob_store, data_dir=settings.data_dir, database=database)
        services = cls(settings=settings, database=database, blobs=blobs, queue=queue)
        from jobs.services.access import admit_jobs  # the door's check, installed in the machinery

        queue.admit = lambda jobs: admit_jobs(services, jobs)
        return services

    def close(self) -> None:
        self.database.dispose()
