"""Content-addressed blobs: stored once, never partial, never a path from outside."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.blobs import BlobNotFound, DbBlobStore, FsBlobStore, InvalidBlobKey, blob_key
from db.engine import Database
from db.migrate import upgrade


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "tmp"]


def test_fs_same_bytes_are_stored_once(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path / "blobs")
    first = store.put(b"pixels")
    second = store.put(b"pixels")
    other = store.put(b"other pixels")
    assert first == second == blob_key(b"pixels") and other != first
    assert len(_files(tmp_path / "blobs")) == 2
    assert store.get(first) == b"pixels" and store.exists(first)


def test_fs_keys_are_never_paths(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path / "blobs")
    for key in ("../../etc/passwd", "A" * 64, "0" * 63, ""):
        with pytest.raises(InvalidBlobKey):
            store.get(key)
    with pytest.raises(BlobNotFound, match="No stored file"):
        store.get("0" * 64)


def test_fs_a_crash_between_temp_write_and_rename_leaves_no_partial_blob(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    data = b"x" * 100_000
    script = textwrap.dedent(f"""
        import os, signal
        from db.blobs import FsBlobStore
        def crash(src, dst):
            os.kill(os.getpid(), signal.SIGKILL)  # the process dies after the temp file is written
        os.replace = crash
        FsBlobStore({str(root)!r}).put(b"x" * 100_000)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1])
    assert proc.returncode == -9
    store = FsBlobStore(root)
    key = blob_key(data)
    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.get(key)
    assert _files(root) == [], "no blob, whole or partial, is visible"
    leftovers = list((root / "tmp").glob("*.part"))
    assert len(leftovers) == 1
    assert store.put(data) == key and store.get(key) == data
    assert store.sweep_temp(older_than_s=-1) == 1
    assert list((root / "tmp").iterdir()) == []


def test_db_store_keeps_bytes_in_the_database_once(db_url: str) -> None:
    database = Database(db_url)
    upgrade(database)
    store = DbBlobStore(database)
    key = store.put(b"\x89PNG bytes")
    assert store.put(b"\x89PNG bytes") == key
    assert store.get(key) == b"\x89PNG bytes" and store.exists(key)
    with database.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM blobs")).scalar() == 1
    with pytest.raises(BlobNotFound):
        store.get("f" * 64)
    database.dispose()
