"""Job kind → handler, payload model and maximum run time. Handlers and models are imported
on first use, so a worker loads only what it runs; a model lives in its handler's module,
which stays light to import (model libraries are imported inside the handler).

A payload is data, never a file name or code: each kind declares a pydantic model of its
payload (a :class:`Payload`, unknown keys refused), checked before the job is queued
(:meth:`jobs.queue.JobQueue.enqueue_many` calls :func:`check_payload`) and again by the
handler (:meth:`Payload.of`), since a row may have been written by an older version.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from jobs.errors import InvalidJobRequest, UnknownJobKind

if TYPE_CHECKING:
    from jobs.context import JobContext

Handler = Callable[["JobContext"], "dict[str, Any] | None"]

#: kind → "module:function". Later capabilities add their kinds here.
BUILTIN_HANDLERS: dict[str, str] = {
    "noop": "jobs.handlers.noop:handle",
    "edit": "jobs.handlers.edit:handle",
    "segment": "jobs.handlers.segment:handle",
    "eval_planner": "jobs.handlers.eval_planner:handle",
    "plan": "jobs.handlers.plan:handle",
    "generate": "jobs.handlers.generate:handle", "swap_face": "jobs.handlers.swap_face:handle",
    "dataset_import": "jobs.handlers.datasets:handle_import",
    "dataset_generate": "jobs.handlers.datasets:handle_generate",
    "dataset_harvest": "jobs.handlers.datasets:handle_harvest",
    "eval_run": "jobs.handlers.eval_run:handle",
    "finetune": "jobs.handlers.finetune:handle",
}

#: kind → "module:Payload subclass". A kind listed here gets its payload checked at enqueue
#: and in its handler; the modules must stay light to import (no model libraries at import time).
PAYLOAD_MODELS: dict[str, str] = {
    "noop": "jobs.handlers.noop:NoopPayload",
    "edit": "jobs.edits:EditPayload",
    "eval_planner": "jobs.handlers.eval_planner:EvalPlannerPayload",
    "plan": "jobs.handlers.plan:PlanPayload",
    "generate": "jobs.handlers.generate:GeneratePayload",
    "swap_face": "jobs.handlers.swap_face:SwapFacePayload",
    "segment": "jobs.handlers.segment:SegmentPayload",
    "dataset_import": "jobs.handlers.datasets:DatasetImportPayload",
    "dataset_generate": "jobs.handlers.datasets:DatasetGeneratePayload",
    "dataset_harvest": "jobs.handlers.datasets:DatasetHarvestPayload",
    "eval_run": "jobs.handlers.eval_run:EvalRunPayload",
    "finetune": "jobs.handlers.finetune:FinetunePayload",
}


#: Longest a job of a kind may run before its worker fails it (kinds not listed: :data:`DEFAULT_MAX_RUN_S`).
#: A handler that ignores the stop gets its worker process replaced (see :mod:`jobs.worker`).
MAX_RUN_SECONDS: dict[str, float] = {
    "noop": 900.0,
    "plan": 900.0,
    "segment": 900.0,
    "swap_face": 1800.0,
    "edit": 3600.0,
    "generate": 3600.0,
    "eval_planner": 86_400.0,
    "dataset_import": 3600.0,
    "dataset_generate": 86_400.0,
    "dataset_harvest": 3600.0,
    "eval_run": 86_400.0,
    "finetune": 7 * 86_400.0,
}
DEFAULT_MAX_RUN_S = 3600.0


class InvalidPayload(InvalidJobRequest):
    """A job payload its kind's model refuses; ``problems`` lists each one as a phrase."""

    def __init__(self, kind: str, problems: list[str]) -> None:
        super().__init__(f"The {kind} job's payload is not valid: {'; '.join(problems)}.", kind=kind,
                         problems=problems)
        self.kind = kind
        self.problems = problems


class Payload(BaseModel):
    """Base of every payload model: unknown keys are refused, values are not coerced from text."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @classmethod
    def parse(cls, kind: str, data: Mapping[str, Any]) -> Self:
        """The payload as this model, or :class:`InvalidPayload` with every problem as a phrase."""
        if not isinstance(data, Mapping):
            raise InvalidPayload(kind, [f"it must be a JSON object, not {type(data).__name__}"])
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise InvalidPayload(kind, [_problem(cls, err) for err in exc.errors()]) from None

    @classmethod
    def of(cls, ctx: JobContext) -> Self:
        """The running job's payload, checked again (the handler's side of the contract)."""
        return cls.parse(ctx.job.kind, ctx.payload)


def _problem(model: type[BaseModel], err: Any) -> str:
    where = ".".join(str(part) for part in err["loc"]) or "payload"
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r} (known: {', '.join(sorted(model.model_fields)) or 'none'})"
    if err["type"] == "missing":
        return f"{where} is missing"
    return f"{where}: {err['msg'][:1].lower()}{err['msg'][1:]}"


def payload_model(kind: str) -> type[Payload] | None:
    """The payload model of ``kind``, or None for a kind that declares none."""
    target = PAYLOAD_MODELS.get(kind)
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    model: type[Payload] = getattr(importlib.import_module(module_name), attr)
    return model


def check_payload(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` as its kind's model normalises it (unset optional keys stay unset), or :class:`InvalidPayload`."""
    model = payload_model(kind)
    if model is None:
        return dict(payload)
    return model.parse(kind, payload).model_dump(mode="json", exclude_unset=True)


class HandlerRegistry:
    def __init__(self, targets: dict[str, str] | None = None) -> None:
        self._targets = dict(BUILTIN_HANDLERS if targets is None else targets)
        self._loaded: dict[str, Handler] = {}
        self._max_run_s = dict(MAX_RUN_SECONDS)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._targets)

    def register(self, kind: str, handler: Handler | str, *, max_run_s: float | None = None) -> None:
        if isinstance(handler, str):
            self._targets[kind] = handler
            self._loaded.pop(kind, None)
        else:
            self._targets[kind] = f"{handler.__module__}:{handler.__qualname__}"
            self._loaded[kind] = handler
        if max_run_s is not None:
            if not 0 < max_run_s < float("inf"):
                raise ValueError(f"A job kind's maximum run time is a positive number of seconds, not {max_run_s}.")
            self._max_run_s[kind] = max_run_s

    def max_run_s(self, kind: str) -> float:
        """How long a job of ``kind`` may run before its worker fails it."""
        return self._max_run_s.get(kind, DEFAULT_MAX_RUN_S)

    def resolve(self, kind: str) -> Handler:
        if kind in self._loaded:
            return self._loaded[kind]
        target = self._targets.get(kind)
        if target is None:
            raise UnknownJobKind(kind, self.kinds)
        module_name, _, attr = target.partition(":")
        handler: Handler = getattr(importlib.import_module(module_name), attr)
        self._loaded[kind] = handler
        return handler
