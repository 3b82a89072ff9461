"""Planning a request for the app and the CLI: in this process when the planner is light, as a `plan` job when not.

The rule planner and API planners run where they are asked (no heavy imports); a
planner that loads a model (``local``) runs in a worker, which keeps it loaded between
requests, so the UI process never imports transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from core.planners import (
    IN_WORKER,
    ChatTurn,
    PlannerUnavailable,
    PlanResult,
    make_planner,
)
from core.text import clean_json, clean_text
from db.models import LOCAL_USER_ID
from jobs.queue import JobStatus
from jobs.services import Services

PLAN_KIND = "plan"


class PlanningFailed(RuntimeError):
    """The planner could not answer; the message is a sentence for the person."""


def plan_request(
    services: Services,
    request: str,
    *,
    labels: Sequence[str],
    conversation: Sequence[ChatTurn] = (),
    planner: str | None = None,
    model: str | None = None,
    fine_tuned: int | None = None,
    user_id: int = LOCAL_USER_ID,
    timeout_s: float = 300.0,
) -> PlanResult:
    """The planner's answer to ``request``; raises :class:`PlanningFailed` with a sentence when it has none.

    ``model`` replaces the settings' model for a planner that takes one (the person's "planner_model");
    ``fine_tuned`` is a registered fine-tuned planner's id (``local`` only).
    """
    name = planner or services.settings.planner
    request = clean_text(request)  # what the chat stores too: a NUL or a lone surrogate cannot travel further
    if name not in IN_WORKER:
        try:
            return make_planner(name, services.settings, model=model).plan(request, labels=list(labels),
                                                                            conversation=list(conversation))
        except PlannerUnavailable as exc:
            raise PlanningFailed(str(exc)) from None
    job_id = submit_plan(services, request, labels=labels, conversation=conversation, planner=name,
                         fine_tuned=fine_tuned, user_id=user_id)
    job = services.queue.wait(job_id, timeout_s=timeout_s)
    if not job.terminal:
        services.queue.cancel(job_id)
        raise PlanningFailed(f"The {name} planner did not answer within {timeout_s:g} s; is a worker running?")
    if job.status is not JobStatus.SUCCEEDED or job.result is None:
        raise PlanningFailed(job.error_message or f"The {name} planner failed.")
    return PlanResult.from_dict(job.result)


def submit_plan(services: Services, request: str, *, labels: Sequence[str], conversation: Sequence[ChatTurn] = (),
                planner: str | None = None, fine_tuned: int | None = None, user_id: int = LOCAL_USER_ID) -> int:
    """Queue a `plan` job on the interactive lane (for callers that poll it themselves)."""
    payload = clean_json({"request": request, "labels": list(labels), "conversation": [asdict(t) for t in conversation],
                          "planner": planner or services.settings.planner})
    if fine_tuned is not None:
        payload["fine_tuned"] = fine_tuned
    return services.queue.enqueue(PLAN_KIND, payload, lane="interactive", priority=10, owner_id=user_id)
