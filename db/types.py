"""Column types shared by every table."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC: the only kind of datetime we store."""
    return datetime.now(timezone.utc)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware in Python and UTC in the database.

    SQLite has no timezone type and hands back naive values; PostgreSQL's ``timestamptz``
    keeps the zone. Refusing naive input here means a local-time value can never be
    compared with a UTC one by accident (sqlmodel 0.0.50 expects aware datetimes too).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value (UTC)")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            # Stored as ISO text without offset; every value is UTC, so text order is time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


#: JSON everywhere, JSONB on PostgreSQL (indexable, compact).
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


#: A 64-bit id that still autoincrements on SQLite (only INTEGER PRIMARY KEY does there).
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
