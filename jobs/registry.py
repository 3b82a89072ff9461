"""Job kind → handler. Handlers are imported on first use, so a worker loads only what it runs."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobs.errors import UnknownJobKind

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
}


class HandlerRegistry:
    def __init__(self, targets: dict[str, str] | None = None) -> None:
        self._targets = dict(BUILTIN_HANDLERS if targets is None else targets)
        self._loaded: dict[str, Handler] = {}

    @property
    def kinds(self) -> list[str]:
        return sorted(self._targets)

    def register(self, kind: str, handler: Handler | str) -> None:
        if isinstance(handler, str):
            self._targets[kind] = handler
            self._loaded.pop(kind, None)
        else:
            self._targets[kind] = f"{handler.__module__}:{handler.__qualname__}"
            self._loaded[kind] = handler

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
