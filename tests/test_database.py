"""The engine layer: SQLite pragmas really took, writes take the lock up front, timestamps are aware."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, StatementError

from db.engine import Database, DatabaseConfigError
from db.migrate import upgrade
from db.models import Image, User
from db.types import utcnow


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=4321)
    upgrade(database)
    return database


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(sqlite_db: Database) -> None:
    assert sqlite_db.sqlite_pragma("journal_mode") == "wal"
    assert sqlite_db.sqlite_pragma("foreign_keys") == 1
    assert sqlite_db.sqlite_pragma("busy_timeout") == 4321


def test_sqlite_write_transactions_take_the_write_lock_at_begin(sqlite_db: Database, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "x.db", timeout=0, isolation_level=None)
    with sqlite_db.write() as conn:
        conn.execute(sa.text("SELECT 1"))  # no write yet: only BEGIN IMMEDIATE can hold the lock now
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # released at commit
    other.execute("ROLLBACK")
    with sqlite_db.read() as conn:
        conn.execute(sa.text("SELECT 1"))
        other.execute("BEGIN IMMEDIATE")  # a read transaction leaves writers alone
        other.execute("ROLLBACK")


def test_foreign_keys_are_enforced_on_sqlite_too(db_url: str) -> None:
    database = Database(db_url)
    upgrade(database)
    with pytest.raises(IntegrityError):
        with database.write_session() as session:
            session.add(Image(sha256="0" * 64, width=1, height=1, format="PNG", byte_size=1, blob_key="0" * 64,
                              created_by=999))
    database.dispose()


def test_timestamps_are_timezone_aware_and_naive_ones_are_refused(db_url: str) -> None:
    database = Database(db_url)
    upgrade(database)
    before = utcnow()
    with database.write_session() as session:
        session.add(User(name="ann"))
    with database.session() as session:
        ann = session.exec(sa.select(User).where(User.name == "ann")).scalar_one()
    assert ann.created_at.tzinfo is not None and ann.created_at >= before.replace(microsecond=0)
    with pytest.raises(StatementError, match="naive datetime"):
        with database.write_session() as session:
            session.add(User(name="bob", created_at=datetime(2026, 1, 1)))
    database.dispose()


def test_unusable_database_urls_are_refused_with_a_reason() -> None:
    with pytest.raises(DatabaseConfigError, match="in-memory"):
        Database("sqlite://")
    with pytest.raises(DatabaseConfigError, match="Unsupported database 'mysql'"):
        Database("mysql://localhost/x")
