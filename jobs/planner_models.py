"""Fine-tuned planners in a worker: adapter blobs unpacked once into the data dir, models loaded once.

A checkpoint's adapter and a trainer checkpoint travel between machines as tar blobs (``db.blobs``:
the filesystem, the database or later object storage), so a worker on another machine can evaluate a
checkpoint, answer with a registered planner, or resume a run, with no shared disk.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from jobs.services import Services


def pack_directory(directory: Path, names: Iterable[str] | None = None) -> bytes:
    """A tar (uncompressed: safetensors and optimiser states do not shrink) of ``directory``'s files."""
    buffer = io.BytesIO()
    wanted = set(names) if names is not None else None
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory).as_posix()
            if path.is_file() and (wanted is None or relative in wanted):
                info = tar.gettarinfo(str(path), arcname=relative)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""  # same files, same blob
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
    return buffer.getvalue()


def unpack_blob(services: Services, key: str, directory: Path) -> Path:
    """The blob ``key`` unpacked into ``directory`` (once: a directory already there is the same content)."""
    if directory.is_dir():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        with tarfile.open(fileobj=io.BytesIO(services.blobs.get(key)), mode="r") as tar:
            tar.extractall(staging, filter="data")  # refuses absolute paths, '..' and links out of the folder
        try:
            os.replace(staging, directory)
        except OSError:  # another worker on this disk unpacked it first
            if not directory.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def adapter_directory(services: Services, key: str) -> Path:
    """Where a checkpoint's adapter blob is unpacked for loading (``<data dir>/adapters/<key>``)."""
    return unpack_blob(services, key, Path(services.settings.data_dir) / "adapters" / key)


@lru_cache(maxsize=2)
def _loaded(base_model: str, adapter: str | None) -> Any:
    from core.planners.local_planner import LocalPlanner

    return LocalPlanner.load(base_model, adapter)


def local_planner(services: Services, base_model: str, adapter_key: str | None) -> Any:
    """The local planner of ``base_model`` with the adapter blob merged in; kept loaded (two at most per worker)."""
    adapter = str(adapter_directory(services, adapter_key)) if adapter_key else None
    return _loaded(base_model, adapter)


__all__ = ["adapter_directory", "local_planner", "pack_directory", "unpack_blob"]
