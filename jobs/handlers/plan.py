"""The `plan` job: a planner that loads a model answers a request in the worker, which keeps the model loaded.

Payload (:class:`PlanPayload`): ``request``, ``labels``, ``conversation`` ([{"role", "content"}]), ``planner``,
``fine_tuned`` (a registered fine-tuned planner's id: its base model with its adapter; local only).
Result: :meth:`core.planners.PlanResult.to_dict`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.planners import PLANNERS, ChatTurn, Planner, PlannerUnavailable, make_planner
from core.settings import Settings
from jobs.context import JobContext
from jobs.errors import PermanentError
from jobs.registry import Payload

#: Bounds far above any real request (planners refuse requests over 2,000 characters themselves).
_Text = Annotated[str, Field(max_length=20_000)]


class _Turn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    role: Literal["user", "assistant", "system"]
    content: _Text


class PlanPayload(Payload):
    request: _Text
    labels: Annotated[list[Annotated[str, Field(max_length=200)]], Field(default_factory=list, max_length=500)]
    conversation: Annotated[list[_Turn], Field(default_factory=list, max_length=200)]
    planner: Literal[PLANNERS] | None = None  # type: ignore[valid-type]
    fine_tuned: Annotated[int, Field(ge=1)] | None = None


@lru_cache(maxsize=2)
def _planner(name: str, settings_json: str) -> Planner:
    """One planner per (name, settings) per worker process: loading a model once, not per request."""
    return make_planner(name, Settings.model_validate_json(settings_json))


def handle(ctx: JobContext) -> dict[str, Any]:
    payload = PlanPayload.of(ctx)
    name = payload.planner or ctx.services.settings.planner
    try:
        if payload.fine_tuned is not None and name == "local":
            planner = _fine_tuned(ctx, payload.fine_tuned)
        else:
            planner = _planner(name, ctx.services.settings.model_dump_json())
    except PlannerUnavailable as exc:
        raise PermanentError(str(exc)) from None
    ctx.progress(0.1, f"planning with {name}")
    conversation = [ChatTurn(t.role, t.content) for t in payload.conversation if t.role in ("user", "assistant")]
    result = planner.plan(payload.request, labels=list(payload.labels), conversation=conversation)
    return result.to_dict()


def _fine_tuned(ctx: JobContext, model_id: int) -> Planner:
    """A registered fine-tuned planner: its base model with its adapter, kept loaded by the worker."""
    from jobs.planner_models import local_planner
    from jobs.services.training import planner_model_by_id

    model = planner_model_by_id(ctx.services, model_id)
    if model is None:
        raise PermanentError(f"The fine-tuned planner {model_id} is no longer registered; choose another in Settings.")
    return local_planner(ctx.services, model.base_model, model.adapter_key)  # type: ignore[no-any-return]
