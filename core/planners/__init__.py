"""Planner backends: request + labels (+ conversation) → reply and validated commands.

``make_planner(name, settings)`` is the one place a backend is chosen. Each backend
lives in its own module, imported only when chosen (the local one imports
transformers, which the UI process never does):

- ``rules``: the offline bilingual parser (``core/planners/rule_planner.py``), the default;
- ``openai``: any OpenAI-compatible chat API (``core/planners/openai_planner.py``);
- ``local``: a transformers model + LoRA with constrained decoding (``core/planners/local_planner.py``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING

from core.planners.base import (
    ChatTurn,
    NotUnderstood,
    Planner,
    PlannerUnavailable,
    PlanResult,
    detect_language,
)

if TYPE_CHECKING:
    from core.settings import Settings

#: name → "module:class"; each class is built as ``cls.from_settings(settings)`` (or ``cls()`` without one).
BACKENDS: dict[str, str] = {
    "rules": "core.planners.rule_planner:RulePlanner",
    "openai": "core.planners.openai_planner:OpenAIPlanner",
    "local": "core.planners.local_planner:LocalPlanner",
}
PLANNERS = tuple(BACKENDS)
#: Planners that load a model into the process: the UI sends their requests to a worker as `plan` jobs.
IN_WORKER = frozenset({"local"})


def make_planner(name: str = "rules", settings: Settings | None = None, *, model: str | None = None) -> Planner:
    """The planner called ``name``; raises :class:`PlannerUnavailable` with a sentence when it cannot run.

    ``model`` overrides the settings' model for a planner whose ``from_settings`` takes one (``openai``);
    the others ignore it.
    """
    target = BACKENDS.get(name)
    if target is None:
        raise PlannerUnavailable(f"There is no planner called {name!r}; the planners are {', '.join(PLANNERS)}.")
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ModuleNotFoundError as exc:
        raise PlannerUnavailable(f"The {name} planner is not available in this installation ({exc.name} is missing).") from None
    if settings is not None and hasattr(cls, "from_settings"):
        if model and "model" in inspect.signature(cls.from_settings).parameters:
            return cls.from_settings(settings, model=model)
        return cls.from_settings(settings)
    return cls()


__all__ = ["BACKENDS", "IN_WORKER", "PLANNERS", "ChatTurn", "NotUnderstood", "PlanResult", "Planner",
           "PlannerUnavailable", "detect_language", "make_planner"]
