"""Running validated commands on an image: which backend runs a command, the classical runs and the generative ones.

The classical editor is exact and CPU-only; it runs ``recolor``, ``adjust``, ``blur``
and ``remove`` (Telea inpainting, the fallback of the generative ``remove``). The
other commands need a generative backend: the diffusers model their setting names,
or the OpenAI image-edit fallback. With neither configured they fail before any
work, with a sentence naming the setting that enables one (DESIGN: "what a backend
cannot do is said, not faked").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core import backends, classical
from core.colors import parse_color
from core.commands import Command
from core.masks import build_mask, resize_mask
from core.rules import Rules, load_rules
from core.settings import Settings

if TYPE_CHECKING:
    from core.generative.executors import GenerativeRun, StepHooks
    from core.generative.registry import PipelineRegistry

class NeedsGenerativeBackend(RuntimeError):
    """A command only a generative editor can run, and none is configured (or the person chose the classical one)."""

    def __init__(self, command: str, message: str | None = None) -> None:
        super().__init__(message or backends.missing_backend_sentence(command))
        self.command = command


@dataclass(frozen=True)
class Regions:
    """What masks are made from: the segmentation's label map and the person's selection.

    ``shape`` is the image's. The label map and the selection may be smaller (made on the
    working copy, same aspect): masks are found at their size and scaled up to the image,
    where the edit and its feathered edge happen.
    """

    shape: tuple[int, int]
    label_map: np.ndarray | None = None
    label_names: Sequence[str] = ()
    selection: np.ndarray | None = None

    def mask(self, targets: Sequence[str], *, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The targets' region at the image's size (or at ``shape``, another scale of it)."""
        return build_mask(targets, label_map=self.label_map, label_names=self.label_names,
                          selection=self.selection, shape=shape or self.shape, scale_sources=True)


@dataclass
class CommandRun:
    """One command's outcome: the new image, notes for the person, and where the time went."""

    image: np.ndarray
    notes: list[str] = field(default_factory=list)
    mask_s: float = 0.0
    op_s: float = 0.0
    #: For a generative run: its model, seed, scheduler, LoRAs and timings (the recipe's ``generation``).
    generation: dict[str, Any] | None = None


def classical_backend_for(command: Command, rules: Rules | None = None) -> bool:
    """True when the classical editor runs this command (itself, or as a generative command's fallback)."""
    rule = (rules or load_rules()).commands[command.command]
    return not rule.generative or rule.classical_fallback


def openai_fallback_configured(settings: Settings | None) -> bool:
    """The OpenAI image-edit fallback is on when its model is named (the key may come from OPENAI_API_KEY)."""
    return backends.openai_fallback_configured(settings)


def local_model_configured(command: Command, settings: Settings | None) -> bool:
    """True when the diffusers model this generative command needs is configured."""
    return backends.local_model_configured(command.command, settings)


def runs_generatively(command: Command, settings: Settings | None, rules: Rules | None = None) -> bool:
    """Whether this command goes to a generative backend (else the classical editor runs it)."""
    return backends.runs_generatively(command.command, settings, rules)


def check_runnable(commands: Sequence[Command], rules: Rules | None = None, settings: Settings | None = None, *,
                   classical_only: bool = False) -> None:
    """Raise :class:`NeedsGenerativeBackend` for the first command no configured backend can run.

    The same check (:func:`core.backends.backend_problem`) greys such a command on the
    Operation Board before any job. Without ``settings`` only the classical editor counts.
    """
    for command in commands:
        problem = backends.backend_problem(command.command, settings, rules, classical_only=classical_only)
        if problem is not None:
            raise NeedsGenerativeBackend(command.command, problem)


def run_generative(image: np.ndarray, command: Command, regions: Regions, params: dict[str, Any], *,
                   settings: Settings, registry: PipelineRegistry | None = None, hooks: StepHooks | None = None,
                   rules: Rules | None = None) -> CommandRun:
    """Run one generative command: on the local diffusers model when configured, else (or when it fails
    for a reason other than a stop) on the OpenAI image-edit fallback when that is configured."""
    from core.generative.errors import GenerationFailed

    rules = rules or load_rules()
    started = time.perf_counter()
    mask = generative_mask(command, regions, rules, optimise=params.get("mask_optimisation", True) is not False)
    masked = time.perf_counter()
    notes: list[str] = []
    if local_model_configured(command, settings):
        from core.generative.registry import shared_registry

        try:
            run = _run_local(image, command, mask, params, registry or shared_registry(settings), settings, hooks)
        except GenerationFailed as exc:
            if not openai_fallback_configured(settings):
                raise
            notes.append(f"The local model failed ({exc}); the OpenAI image edit was used instead.")
            run = _run_openai(image, command, mask, params, settings, hooks)
    else:
        run = _run_openai(image, command, mask, params, settings, hooks)
    return CommandRun(run.image, notes + run.notes, mask_s=masked - started, op_s=time.perf_counter() - masked,
                      generation={"command": command.command, **run.record()})


def generative_mask(command: Command, regions: Regions, rules: Rules | None = None, *,
                    optimise: bool = True) -> np.ndarray | None:
    """The region a command repaints; None: the whole image.

    With ``optimise`` (the person's "mask_optimisation", on by default) and a segmentation,
    its edges are adjusted along the parts' edges (the thesis' Algorithm 1); without, it is the mask as built.
    """
    rules = rules or load_rules()
    if command.command in ("instruct", "style"):
        return None
    targets = ("Face",) if command.command == "face" else command.targets(rules)
    if optimise and regions.label_map is not None and command.command != "face":
        from core.mask_tools import optimise_mask

        # Optimised where the parts' edges are known (the label map's size), then scaled to the image.
        at_labels = regions.label_map.shape[:2]
        optimised = optimise_mask(regions.mask(targets, shape=at_labels), regions.label_map, regions.label_names)
        return resize_mask(optimised, regions.shape)
    return regions.mask(targets)


def _run_local(image: np.ndarray, command: Command, mask: np.ndarray | None, params: dict[str, Any],
               registry: PipelineRegistry, settings: Settings, hooks: StepHooks | None) -> GenerativeRun:
    from core.generative import executors

    lora_dir = settings.lora_dir
    name, paras = command.command, command.paras
    if name == "change":
        assert mask is not None
        return executors.inpaint(registry, image, mask, str(paras[1]), params, hooks, lora_dir=lora_dir)
    if name == "remove":
        assert mask is not None
        return executors.remove(registry, image, mask, params, hooks, lora_dir=lora_dir)
    if name == "face":
        assert mask is not None
        return executors.retouch_face(registry, image, mask, str(paras[0]), params, hooks, lora_dir=lora_dir)
    if name == "instruct":
        return executors.instruct(registry, image, str(paras[0]), params, hooks, lora_dir=lora_dir)
    if name == "style":
        return executors.restyle(registry, image, str(paras[0]), params, hooks, lora_dir=lora_dir)
    raise ValueError(f"'{name}' is not a generative command.")


def _run_openai(image: np.ndarray, command: Command, mask: np.ndarray | None, params: dict[str, Any],
                settings: Settings, hooks: StepHooks | None) -> GenerativeRun:
    from core.generative.openai_edit import openai_edit, prompt_for

    if not openai_fallback_configured(settings):
        raise NeedsGenerativeBackend(command.command)
    whole = np.ones(image.shape[:2], dtype=bool)
    return openai_edit(image, whole if mask is None else mask, prompt_for(command), params, settings, hooks)


def run_classical(image: np.ndarray, command: Command, regions: Regions, params: dict[str, Any],
                  rules: Rules | None = None) -> CommandRun:
    """Run one classical command; ``params`` are its resolved parameters (``feather_px`` is used)."""
    rules = rules or load_rules()
    runner = _RUNNERS.get(command.command)
    if runner is None or not classical_backend_for(command, rules):
        raise NeedsGenerativeBackend(command.command)
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
