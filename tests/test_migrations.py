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
          "workers", "blobs", "sessions", "audit_log", "step_reviews", "step_comments", "datasets", "dataset_versions",
          "dataset_rows", "eval_runs", "eval_examples", "training_runs", "training_steps", "training_checkpoints",
          "planner_models", "alembic_version"}


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


def test_a_single_user_0003_database_keeps_its_histories_with_the_local_user_now_admin(db_url: str) -> None:
    database = Database(db_url)
    assert upgrade(database, "0003") == "0003"
    with database.write() as conn:
        conn.execute(sa.text("INSERT INTO users (id, name, display_name, is_admin, created_at) VALUES "
                             "(2, 'ann', 'Ann', true, CURRENT_TIMESTAMP), (3, 'bob', 'Bob', false, CURRENT_TIMESTAMP)"))
        conn.execute(sa.text("INSERT INTO images (id, sha256, width, height, format, byte_size, blob_key, created_by, "
                             "created_at) VALUES (1, :h, 4, 4, 'PNG', 10, :h, 1, CURRENT_TIMESTAMP)"), {"h": "a" * 64})
        conn.execute(sa.text("INSERT INTO histories (id, title, owner_id, created_at, updated_at) "
                             "VALUES (1, 'portrait', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    assert upgrade(database) == head_revision()
    with database.read() as conn:
        users = conn.execute(sa.text("SELECT id, name, role, active, password_hash FROM users ORDER BY id")).all()
        owner = conn.execute(sa.text("SELECT owner_id FROM histories WHERE id = 1")).scalar_one()
    assert [tuple(u) for u in users] == [(LOCAL_USER_ID, LOCAL_USER_NAME, "admin", True, None),
                                         (2, "ann", "admin", True, None), (3, "bob", "editor", True, None)]
    assert owner == LOCAL_USER_ID
    database.dispose()
