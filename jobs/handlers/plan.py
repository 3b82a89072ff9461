"""The `plan` job: a planner that loads a model answers a request in the worker, which keeps the model loaded.

Payload: ``request``, ``labels``, ``conversation`` ([{"role", "content"}]), ``planner``.
Result: :meth:`core.planners.PlanResult.to_dict`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from core.planners import ChatTurn, Planner, PlannerUnavailable, make_planner
from core.settings import Settings
from jobs.context import JobContext
from jobs.errors import PermanentError


@lru_cache(maxsize=2)
def _planner(name: str, settings_json: str) -> Planner:
    """One planner per (name, settings) per worker process: loading a model once, not per request."""
    return make_planner(name, Settings.model_validate_json(settings_json))


def handle(ctx: JobContext) -> dict[str, Any]:
    payload = ctx.payload
    name = str(payload.get("planner") or ctx.services.settings.planner)
    try:
        planner = _planner(name, ctx.services.settings.model_dump_json())
    except PlannerUnavailable as exc:
        raise PermanentError(str(exc)) from None
    ctx.progress(0.1, f"planning with {name}")
    conversation = [ChatTurn(t["role"], t["content"]) for t in payload.get("conversation", [])
                    if isinstance(t, dict) and t.get("role") in ("user", "assistant")]
    result = planner.plan(str(payload.get("request", "")), labels=list(payload.get("labels", [])),
                          conversation=conversation)
    return result.to_dict()
