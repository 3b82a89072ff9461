"""Engines and transactions for SQLite (the embedded default) and PostgreSQL.

SQLite is made fit for several processes: WAL journal (checked, not assumed), a busy
timeout, foreign keys on, and ``BEGIN IMMEDIATE`` for write transactions so two writers
queue on the lock up front instead of failing halfway with "database is locked".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session

_BEGIN_OPTION = "chatedit_sqlite_begin"


class DatabaseConfigError(RuntimeError):
    """The database URL or the database itself cannot be used as configured (the message never shows a password)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{reason} (database: {safe_url(url)}).")
        self.url = url
        self.reason = reason


def safe_url(url: str) -> str:
    """``url`` as it may be shown: without its password, and never an exception for a malformed one."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else "(an unreadable URL)"


def _sqlite_file(url: sa.URL) -> Path | None:
    if url.database in (None, "", ":memory:") or str(url.database).startswith("file:"):
        return None
    return Path(url.database)


def _install_sqlite_pragmas(engine: Engine, url_text: str, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to us: pysqlite's implicit BEGIN cannot be IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise DatabaseConfigError(
                    url_text, f"SQLite refused WAL mode (journal_mode is {mode!r}); is the file on a network share?"
                )
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            # Safe with WAL: a power cut may lose the last commits, never corrupts the file.
            cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(
    url: str,
    *,
    busy_timeout_ms: int = 15_000,
    pool_size: int = 5,
    echo: bool = False,
    synchronous_commit: bool = True,
    connect_timeout_s: float = 10.0,
    statement_timeout_s: float = 300.0,
) -> Engine:
    """An engine for ``url``: ``sqlite:///path`` or ``postgresql+psycopg://...``.

    ``synchronous_commit=False`` (PostgreSQL) makes commits return before the WAL is
    flushed: a server crash may lose the last moments of such transactions, never
    corrupt anything. Only for writes whose loss is harmless (see ``Database.write``).
    On PostgreSQL a connection attempt gives up after ``connect_timeout_s`` (a server
    that accepts and never answers would hang every command) and the server cancels a
    statement after ``statement_timeout_s`` (0: never).
    """
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise DatabaseConfigError(url, "The database URL cannot be read; check CHATEDIT_DATABASE_URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_file(parsed)
        if path is None:
            raise DatabaseConfigError(url, "An in-memory SQLite database cannot be shared by the app and its workers; "
                                           "point CHATEDIT_DATABASE_URL at a file")
        if path.is_dir():
            raise DatabaseConfigError(url, f"The SQLite database {path} is a folder; "
                                           "point CHATEDIT_DATABASE_URL at a file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseConfigError(
                url, f"The folder of the SQLite database, {path.parent}, cannot be created ({exc.strerror or exc}); "
                     "check CHATEDIT_DATABASE_URL"
            ) from None
        engine = sa.create_engine(
            parsed,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _install_sqlite_pragmas(engine, url, busy_timeout_ms)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg_async"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = [] if synchronous_commit else ["-c synchronous_commit=off"]
        if statement_timeout_s > 0:
            options.append(f"-c statement_timeout={max(1, round(statement_timeout_s * 1000))}")
        # libpq counts whole seconds (and at least 2); psycopg applies it to the whole connection attempt.
        connect_args: dict[str, Any] = {"connect_timeout": max(2, math.ceil(connect_timeout_s))}
        if options:
            connect_args["options"] = " ".join(options)
        # No pool_pre_ping: with psycopg it costs three round trips per checkout, more than a
        # queue claim itself. A dropped connection fails one statement, SQLAlchemy then
        # invalidates the pool, and callers retry (the worker does); recycling bounds staleness.
        return sa.create_engine(parsed, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                                connect_args=connect_args)
    raise DatabaseConfigError(url, f"Unsupported database {backend!r} in CHATEDIT_DATABASE_URL; "
                                   "use sqlite:///PATH or postgresql+psycopg://...")


class Database:
    """One database: its engine, plus read and write transactions that do the right thing per dialect."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 15_000, pool_size: int = 5, echo: bool = False,
                 connect_timeout_s: float = 10.0, statement_timeout_s: float = 300.0) -> None:
        self.url = url
        self._engine_args: dict[str, Any] = {
            "busy_timeout_ms": busy_timeout_ms, "pool_size": pool_size, "echo": echo,
            "connect_timeout_s": connect_timeout_s, "statement_timeout_s": statement_timeout_s,
        }
        self.engine = make_engine(url, **self._engine_args)
        self.dialect = self.engine.dialect.name
        self._writer = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self._relaxed_writer: Engine | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (deferred on SQLite: it takes no write lock)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """A write transaction, committed on success. ``BEGIN IMMEDIATE`` on SQLite.

        ``durable=False`` is for bookkeeping that may be lost in a server crash without
        harm, such as a job's lease, heartbeat or progress: on PostgreSQL its commit does
        not wait for the WAL flush (SQLite in WAL mode with synchronous=NORMAL never does).
        """
        engine = self._writer if durable or not self.is_postgres else self._relaxed()
        with engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def autocommit(self, *, durable: bool = True) -> Iterator[Connection]:
        """A connection on which each statement commits on its own (PostgreSQL: no BEGIN/COMMIT round trips).

        For single-statement writes, which are atomic anyway. SQLite gets a write
        transaction instead, to keep its writers queueing on ``BEGIN IMMEDIATE``.
        """
        if not self.is_postgres:
            with self.write(durable=durable) as conn:
                yield conn
            return
        engine = self.engine if durable else self._relaxed()
        with engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def _relaxed(self) -> Engine:
        if self._relaxed_writer is None:
            self._relaxed_writer = make_engine(self.url, synchronous_commit=False, **self._engine_args)
        return self._relaxed_writer

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session for reads; call ``write_session`` to change rows."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """An ORM session whose transaction is a write transaction, committed on success."""
        with Session(self._writer, expire_on_commit=False) as session:
            yield session
            session.commit()

    def sqlite_pragma(self, name: str) -> Any:
        """Read one PRAGMA (tests and the Status page check that WAL really took)."""
        if not self.is_sqlite:
            raise DatabaseConfigError(self.url, "PRAGMAs exist only on SQLite")
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._relaxed_writer is not None:
            self._relaxed_writer.dispose()

    @property
    def connect_timeout_s(self) -> float:
        """How long a connection attempt may take (a worker's LISTEN connection uses it too)."""
        return float(self._engine_args["connect_timeout_s"])

    def __repr__(self) -> str:
        return f"Database({safe_url(self.url)!r})"
