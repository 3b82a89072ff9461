"""Schema migrations: ``chatedit init`` brings any database from empty (or older) to head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.engine import Database

_SCRIPT_LOCATION = Path(__file__).with_name("migrations")
#: Any constant: serialises concurrent `init` runs on one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x43686174


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPT_LOCATION))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(database: Database, revision: str = "head") -> str | None:
    """Upgrade the schema to ``revision``; returns the revision now in force."""
    cfg = alembic_config()
    with database.write() as conn:
        if database.is_postgres:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(database)


def downgrade(database: Database, revision: str) -> str | None:
    cfg = alembic_config()
    with database.write() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    return current_revision(database)


def autogenerate(database: Database, message: str) -> None:
    """Write a new revision from the difference between the models and ``database`` (developers only)."""
    cfg = alembic_config()
    with database.write() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
