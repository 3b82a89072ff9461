"""The editor's chat: a request goes to the planner the person chose, the reply and its commands land in the history.

Light planners answer in this process (``jobs.planning.plan_request``); the ``openai``
planner streams its reply into the chat as the model writes it; a planner that loads a
model (``local``) runs as a ``plan`` job on a worker while the page shows its progress.
**Advise** asks the vision model for suggestions, which land on the Operation Board as
advice (shown, never run) beside the commands that carry them out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import streamlit as st

from app.ui.common import get_services, watch_job
from core.errors import error_line
from core.planner_install import LOCAL_PLANNER_MISSING, local_planner_model
from core.planners import (
    IN_WORKER,
    ChatTurn,
    PlannerUnavailable,
    PlanResult,
    detect_language,
    make_planner,
)
from db.models import LOCAL_USER_ID
from jobs.conversations import (
    MessageRecord,
    add_message,
    add_pending_plan,
    messages,
    resolve_pending_plan,
)
from jobs.errors import InvalidJobRequest
from jobs.planning import PlanningFailed, plan_request, submit_plan
from jobs.queue import JobRecord, JobStatus
from jobs.services import Services, training
from jobs.services.access import admit_owners, require_history_write
from jobs.services.training import PlannerChoice
from jobs.user_settings import get_preferences

log = logging.getLogger(__name__)
NO_COMMANDS = "(No commands: try naming a change such as brighter, more contrast, warmer, blur, or a colour.)"


def planner_choice(services: Services, user_id: int = LOCAL_USER_ID) -> PlannerChoice:
    """The planner ``user_id`` chose in Settings, else the team's default fine-tuned one, else the installation's."""
    return training.planner_choice(services, get_preferences(services, user_id))


def planner_name(services: Services, user_id: int = LOCAL_USER_ID) -> str:
    return planner_choice(services, user_id).planner


def planner_model(services: Services, user_id: int = LOCAL_USER_ID) -> str | None:
    """The person's model for the openai planner (None: CHATEDIT_OPENAI_MODEL)."""
    return get_preferences(services, user_id).get("planner_model") or None


def board_items(result: PlanResult) -> list[dict[str, Any]]:
    """A plan's commands as Operation Board rows: the valid ones, then each rejected item with its reason."""
    board: list[dict[str, Any]] = [{**c.to_wire(), "valid": True, "reason": None} for c in result.commands]
    for rejection in result.rejections:
        item = rejection.item if isinstance(rejection.item, dict) else {"raw": rejection.item}
        board.append({**item, "valid": False, "reason": rejection.reason})
    return board


def reply_of(result: PlanResult) -> tuple[str, list[dict[str, Any]]]:
    """What the chat keeps of a plan: the reply text and its Operation Board rows."""
    board = board_items(result)
    reply = result.reply
    if not board and not result.not_understood:
        reply += "\n\n" + NO_COMMANDS
    return reply, board


def failure_text(sentence: str) -> str:
    return f"I cannot plan this: {sentence}"


def record_reply(services: Services, history_id: int, result: PlanResult) -> MessageRecord:
    reply, board = reply_of(result)
    return add_message(services, history_id, "assistant", reply, commands=board)


def record_failure(services: Services, history_id: int, sentence: str) -> MessageRecord:
    return add_message(services, history_id, "assistant", failure_text(sentence), commands=[])


def turns(history: Sequence[MessageRecord]) -> list[ChatTurn]:
    return [ChatTurn(m.role, m.content) for m in history if m.role in ("user", "assistant")]  # type: ignore[arg-type]


def _unexpected(exc: Exception) -> str:
    log.exception("the planner failed")
    return f"the planner failed unexpectedly ({error_line(exc)})."


def ask(services: Services, history_id: int, prompt: str, labels: list[str], box: Any, *,
        user_id: int = LOCAL_USER_ID) -> None:
    """Send ``prompt`` to ``user_id``'s planner; the reply (or a sentence saying why there is none) joins the chat.

    Chatting changes the history and may start a job, so it is refused (``PermissionDenied``, nothing
    stored) unless ``user_id`` may submit jobs and change this history.
    """
    admit_owners(services, [user_id])
    require_history_write(services, user_id, history_id)
    history = messages(services, history_id)
    add_message(services, history_id, "user", prompt, author_id=user_id)
    choice = planner_choice(services, user_id)
    name = choice.planner
    conversation = turns(history)
    if name in IN_WORKER:
        if name == "local" and choice.model is None and local_planner_model(services.settings) is None:
            record_failure(services, history_id, LOCAL_PLANNER_MISSING.replace("The local", "the local", 1)
                           .removesuffix(".") + ", or choose another planner in Settings.")
            return
        try:
            job_id = submit_plan(services, prompt, labels=labels, conversation=conversation, planner=name,
                                 fine_tuned=choice.model.id if choice.model else None, user_id=user_id)
        except InvalidJobRequest as exc:  # e.g. the person already has as many jobs queued as one may
            record_failure(services, history_id, f"nothing was queued. {exc}")
            return
        add_pending_plan(services, history_id, job_id)  # kept with the history: a reload keeps watching the job
        return
    if name == "openai":
        _ask_streaming(services, history_id, prompt, labels, conversation, box, model=planner_model(services, user_id))
        return
    try:
        with st.spinner(f"Planning with {name}…"):
            result = plan_request(services, prompt, labels=labels, conversation=conversation, planner=name,
                                  model=planner_model(services, user_id), user_id=user_id)
    except (PlanningFailed, PlannerUnavailable) as exc:
        record_failure(services, history_id, str(exc))
    except Exception as exc:  # noqa: BLE001 - a person sees a sentence, the log has the traceback
        record_failure(services, history_id, _unexpected(exc))
    else:
        record_reply(services, history_id, result)


def _ask_streaming(services: Services, history_id: int, prompt: str, labels: list[str],
                   conversation: list[ChatTurn], box: Any, *, model: str | None) -> None:
    """The openai planner's reply, written into the chat as it arrives; the final result is what is kept."""
    try:
        planner = make_planner("openai", services.settings, model=model)
    except PlannerUnavailable as exc:
        record_failure(services, history_id, str(exc))
        return
    final: list[PlanResult] = []

    def deltas() -> Iterator[str]:
        for piece in planner.plan_stream(prompt, labels=labels, conversation=conversation):  # type: ignore[attr-defined]
            if isinstance(piece, PlanResult):
                final.append(piece)
            elif piece:
                yield piece

    with box:
        with st.chat_message("user"):
            st.markdown(prompt)
        with st.chat_message("assistant"):
            try:
                st.write_stream(deltas())
            except PlannerUnavailable as exc:
                record_failure(services, history_id, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - a person sees a sentence, the log has the traceback
                record_failure(services, history_id, _unexpected(exc))
                return
    if not final:
        record_failure(services, history_id, "the planner's answer ended before it was complete; try again.")
        return
    record_reply(services, history_id, final[0])


def plan_job_panel(job_id: int, history_id: int, *, cancellable: bool = True) -> None:
    """A `plan` job on a worker: its progress and Cancel; when it ends, its reply (or why not) joins the chat.

    The job is found from the history's pending marker, so a reload (or another tab) shows
    the same job; the reply replaces the marker once, whoever sees the end first (someone only
    looking too: the reply is the job's, not theirs). ``cancellable``: whether this person may stop it.
    """
    watch_job(job_id, doing="Planning", on_end=partial(_plan_ended, history_id, job_id), cancellable=cancellable)


def _plan_ended(history_id: int, job_id: int, job: JobRecord | None) -> None:
    if job is None:
        content, board = failure_text("the planning job is gone; ask again."), []
    elif job.status is JobStatus.SUCCEEDED and job.result:
        content, board = reply_of(PlanResult.from_dict(job.result))
    elif job.status is JobStatus.CANCELLED:
        content, board = failure_text("planning was cancelled."), []
    else:
        planner = job.payload.get("planner", "the")
        content, board = failure_text(job.error_message or f"the {planner} planner failed."), []
    resolve_pending_plan(get_services(), history_id, job_id, content, board)


def advise_image(services: Services, history_id: int, image_png: bytes, labels: list[str], *,
                 user_id: int = LOCAL_USER_ID) -> None:
    """The vision model's suggestions for the base image, as an assistant message whose rows include the advice.

    The advice joins the history's chat, so ``user_id`` must be allowed to change it (``PermissionDenied``).
    """
    require_history_write(services, user_id, history_id)
    from core.planners.advice import AdviceImageError, advise

    last_user = next((m.content for m in reversed(messages(services, history_id)) if m.role == "user"), "")
    language = detect_language(last_user)
    try:
        with st.spinner(f"Asking {services.settings.vision_model} for advice…"):
            result = advise(image_png, labels, services.settings, language)
    except (PlannerUnavailable, AdviceImageError) as exc:
        add_message(services, history_id, "assistant", f"I cannot give advice: {exc}", commands=[])
        return
    except Exception as exc:  # noqa: BLE001 - a person sees a sentence, the log has the traceback
        add_message(services, history_id, "assistant", f"I cannot give advice: {_unexpected(exc)}", commands=[])
        return
    add_message(services, history_id, "assistant", result.reply or "Here are my suggestions.",
                commands=board_items(result))
