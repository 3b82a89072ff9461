"""Migrations bring an empty database to head on SQLite and PostgreSQL, and match the models exactly."""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from db.engine import Database
from db.migrate import current_revision, downgrade, head_revision, upgrade
from db.models import LOCAL_USER_ID, LOCAL_USER_NAME

TABLES = {"users", "images", "segmentations", "histories", "steps", "chat_messages", "jobs", "job_outputs",
          "workers", "blobs", "alembic_version"}


def test_empty_to_head_creates_every_table_and_the_local_user(db_url: str) -> None:
    database = Database(db_url)
    assert current_revision(database) is None
    assert upgrade(database) == head_revision()
    assert set(sa.inspect(database.engine).get_table_names()) == TABLES
    with database.read() as conn:
        assert conn.execute(sa.text("SELECT id, name FROM users")).all() == [(LOCAL_USER_ID, LOCAL_USER_NAME)]
    # Running it again changes nothing.
    assert upgrade(database) == head_revision()
    database.dispose()


def test_the_migrations_match_the_models(db_url: str) -> None:
    database = Database(db_url)
    upgrade(database)
    with database.engine.connect() as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # expression index ix_jobs_claim cannot be reflected
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    # Alembic cannot reflect the expression index ix_jobs_claim on every dialect; its existence is checked below.
    diff = [d for d in diff if not (d[0].endswith("_index") and d[1].name == "ix_jobs_claim")]
    assert diff == []
    database.dispose()


def test_downgrade_to_empty_and_back(db_url: str) -> None:
    database = Database(db_url)
    upgrade(database)
    downgrade(database, "base")
    assert set(sa.inspect(database.engine).get_table_names()) == {"alembic_version"}
    assert upgrade(database) == head_revision()
    database.dispose()


def test_the_claim_index_is_used_on_postgres_and_sqlite(db_url: str) -> None:
    database = Database(db_url)
    upgrade(database)
    indexes = {ix["name"] for ix in sa.inspect(database.engine).get_indexes("jobs")}
    assert {"ix_jobs_claim", "ix_jobs_owner_rank", "ix_jobs_lane_rank", "ix_jobs_lease"} <= indexes
    database.dispose()
