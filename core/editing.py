"""Running validated commands on an image: which backend runs a command, and the classical runs.

The classical editor is exact and CPU-only; it runs ``recolor``, ``adjust``, ``blur``
and ``remove`` (Telea inpainting, the fallback of the generative ``remove``). The
other commands need a generative backend; with none configured they fail before any
work, with a sentence naming the setting that enables one (DESIGN: "what a backend
cannot do is said, not faked").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import classical
from core.colors import parse_color
from core.commands import Command
from core.masks import build_mask
from core.rules import Rules, load_rules

#: The setting that gives each generative command a backend (issue 6's model registry).
GENERATIVE_SETTINGS: dict[str, str] = {
    "change": "CHATEDIT_INPAINT_MODEL",
    "remove": "CHATEDIT_INPAINT_MODEL",
    "face": "CHATEDIT_BASE_MODEL",
    "instruct": "CHATEDIT_IP2P_MODEL",
    "style": "CHATEDIT_BASE_MODEL",
}

_WHAT_IT_NEEDS: dict[str, str] = {
    "CHATEDIT_INPAINT_MODEL": "a Stable Diffusion inpainting model",
    "CHATEDIT_BASE_MODEL": "a Stable Diffusion model",
    "CHATEDIT_IP2P_MODEL": "an InstructPix2Pix model",
}


class NeedsGenerativeBackend(RuntimeError):
    """A command only a generative editor can run, and none is configured."""

    def __init__(self, command: str, setting: str) -> None:
        super().__init__(
            f"'{command}' needs a generative editor and none is configured; set {setting} to "
            f"{_WHAT_IT_NEEDS.get(setting, 'a model')} (an HF id or a local directory) to enable it."
        )
        self.command = command
        self.setting = setting


@dataclass(frozen=True)
class Regions:
    """What masks are made from: the segmentation's label map and the person's selection."""

    shape: tuple[int, int]
    label_map: np.ndarray | None = None
    label_names: Sequence[str] = ()
    selection: np.ndarray | None = None

    def mask(self, targets: Sequence[str]) -> np.ndarray:
        return build_mask(targets, label_map=self.label_map, label_names=self.label_names,
                          selection=self.selection, shape=self.shape)


@dataclass
class CommandRun:
    """One command's outcome: the new image, notes for the person, and where the time went."""

    image: np.ndarray
    notes: list[str] = field(default_factory=list)
    mask_s: float = 0.0
    op_s: float = 0.0


def classical_backend_for(command: Command, rules: Rules | None = None) -> bool:
    """True when the classical editor runs this command (itself, or as a generative command's fallback)."""
    rule = (rules or load_rules()).commands[command.command]
    return not rule.generative or rule.classical_fallback


def check_runnable(commands: Sequence[Command], rules: Rules | None = None) -> None:
    """Raise :class:`NeedsGenerativeBackend` for the first command no configured backend can run."""
    rules = rules or load_rules()
    for command in commands:
        if not classical_backend_for(command, rules):
            raise NeedsGenerativeBackend(command.command, GENERATIVE_SETTINGS.get(command.command, "a generative model"))


def run_classical(image: np.ndarray, command: Command, regions: Regions, params: dict[str, Any],
                  rules: Rules | None = None) -> CommandRun:
    """Run one classical command; ``params`` are its resolved parameters (``feather_px`` is used)."""
    rules = rules or load_rules()
    runner = _RUNNERS.get(command.command)
    if runner is None or not classical_backend_for(command, rules):
        raise NeedsGenerativeBackend(command.command, GENERATIVE_SETTINGS.get(command.command, "a generative model"))
    started = time.perf_counter()
    mask = regions.mask(command.targets(rules))
    masked = time.perf_counter()
    feather_px = params.get("feather_px")
    result = runner(image, command, mask, None if feather_px is None else int(feather_px))
    done = time.perf_counter()
    result.mask_s, result.op_s = masked - started, done - masked
    return result


def _recolor(image: np.ndarray, command: Command, mask: np.ndarray, feather_px: int | None) -> CommandRun:
    return CommandRun(classical.recolor(image, mask, parse_color(command.paras[1]), feather_px=feather_px))


def _adjust(image: np.ndarray, command: Command, mask: np.ndarray, feather_px: int | None) -> CommandRun:
    prop, amount = command.paras[0], float(command.paras[1])
    return CommandRun(classical.adjust(image, prop, amount, mask, feather_px=feather_px))


def _blur(image: np.ndarray, command: Command, mask: np.ndarray, feather_px: int | None) -> CommandRun:
    return CommandRun(classical.blur(image, mask, float(command.paras[1]), feather_px=feather_px))


def _remove(image: np.ndarray, command: Command, mask: np.ndarray, feather_px: int | None) -> CommandRun:
    result = classical.remove(image, mask)
    return CommandRun(result.image, list(result.notes))


_RUNNERS: dict[str, Callable[[np.ndarray, Command, np.ndarray, int | None], CommandRun]] = {
    "recolor": _recolor,
    "adjust": _adjust,
    "blur": _blur,
    "remove": _remove,
}
