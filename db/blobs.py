"""Content-addressed storage for image bytes.

A blob's key is the sha256 of its bytes, so the same bytes are stored once however
often they are uploaded or produced, and a job that runs twice writes the same blob.
``fs`` keeps files under the data dir (written to a temp file, fsynced, then renamed:
a crash leaves no partial blob). ``db`` keeps bytes in the database, so a worker on
another machine needs no shared disk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from db.engine import Database
from db.models import Blob
from db.types import utcnow

BlobStoreKind = Literal["fs", "db"]


class BlobNotFound(KeyError):
    """No blob has this key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"No stored file has the key {self.key}."


class InvalidBlobKey(ValueError):
    """A key that is not a sha256 hex digest (never turned into a path)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key!r} is not a blob key (64 lowercase hex digits)")
        self.key = key


class StorageFull(OSError):
    """The disk holding the blobs is full (or over quota): said as such, not as a failed write."""

    def __init__(self, root: Path, cause: OSError) -> None:
        super().__init__(cause.errno, f"The disk holding the blob store {root} is full; free some space "
                                      "(or move CHATEDIT_DATA_DIR to a larger disk).")
        self.root = root

    def __str__(self) -> str:
        return str(self.strerror)


def blob_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checked(key: str) -> str:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise InvalidBlobKey(key)
    return key


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its key."""

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; raises :class:`BlobNotFound`."""

    def exists(self, key: str) -> bool: ...


class FsBlobStore:
    """Blobs as files ``<root>/ab/cd/<sha256>``; temp files live in ``<root>/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        key = _checked(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = blob_key(data)
        final = self.path_for(key)
        if final.exists():
            return key
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix=key[:16] + ".", suffix=".part")
        except OSError as exc:
            self._raise_if_full(exc)
            raise
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            # Atomic on POSIX: readers see no file or the whole file, never a part.
            os.replace(tmp_name, final)
        except BaseException as exc:
            Path(tmp_name).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                self._raise_if_full(exc)
            raise
        return key

    def _raise_if_full(self, exc: OSError) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(self.root, exc) from exc

    def get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def sweep_temp(self, older_than_s: float = 3600.0) -> int:
        """Delete temp files left by writers that crashed; returns how many went."""
        cutoff = time.time() - older_than_s
        removed = 0
        for part in self._tmp.glob("*.part"):
            try:
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class DbBlobStore:
    """Blobs as rows of the ``blobs`` table."""

    def __init__(self, database: Database) -> None:
        self.database = database
        table = Blob.__table__
        insert = postgresql.insert if database.is_postgres else sqlite.insert
        self._insert = insert(table).on_conflict_do_nothing(index_elements=["sha256"])
        self._table = table

    def put(self, data: bytes) -> str:
        key = blob_key(data)
        if self.exists(key):
            return key
        with self.database.write() as conn:
            conn.execute(self._insert, {"sha256": key, "byte_size": len(data), "data": data, "created_at": utcnow()})
        return key

    def get(self, key: str) -> bytes:
        with self.database.read() as conn:
            data = conn.execute(sa.select(self._table.c.data).where(self._table.c.sha256 == _checked(key))).scalar()
        if data is None:
            raise BlobNotFound(key)
        return bytes(data)

    def exists(self, key: str) -> bool:
        with self.database.read() as conn:
            return conn.execute(sa.select(sa.literal(1)).where(self._table.c.sha256 == _checked(key))).first() is not None


def make_blob_store(kind: BlobStoreKind, *, data_dir: Path, database: Database) -> BlobStore:
    if kind == "fs":
        return FsBlobStore(Path(data_dir) / "blobs")
    if kind == "db":
        return DbBlobStore(database)
    raise ValueError(f"unknown blob store {kind!r}: use 'fs' or 'db'")
