"""The Editor page: start a history, chat, pick commands on the Operation Board, run them, review, set as base, undo.

The open history lives in the URL (``?history=ID``), so a reload or a shared link opens
the same history, its conversation and its base step again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from app.ui import chat, segments
from app.ui import selection as sel
from app.ui.common import (
    command_summary,
    get_services,
    png_download,
    png_of,
    preview_of,
    rgb_of,
    watch_job,
)
from app.ui.compare import image_size, render_compare
from app.ui.history_tree import render_tree, step_kind
from app.ui.identity import can, current_actor
from app.ui.samples import SAMPLES, sample_png
from app.ui.step_review import review_panel
from core.commands import validate_item
from core.images import ImageRejected
from core.recall import Recall, recall_from_png
from core.rules import ParaRule, Rules, load_rules
from db.models import LOCAL_USER_ID
from jobs.context import latest_preview_key
from jobs.conversations import MessageRecord, add_message, messages, pending_plan_job
from jobs.edits import EditRequest, InvalidEdit, backend_problems, submit_edit
from jobs.errors import InvalidJobRequest, JobNotFound
from jobs.gallery import base_step_id, last_job_id, set_last_job
from jobs.handlers.generate import MAX_PROMPT, submit_generate
from jobs.handlers.swap_face import SWAP_FACE_KIND, submit_swap_face
from jobs.histories import (
    HistoryNotFound,
    HistoryRecord,
    StaleHistory,
    StepNotFound,
    get_history,
    get_step,
    history_steps,
    history_version,
    start_history,
)
from jobs.images import clean_upload, store_loaded, store_upload
from jobs.queue import JobRecord, JobStatus
from jobs.services import Services, access
from jobs.services.permissions import Actor, PermissionDenied, actor_for, allowed
from jobs.user_settings import (
    InvalidPreferences,
    edit_params,
    get_preferences,
    save_preferences,
    validate_preferences,
)

#: Session keys of the open history; reset when another history opens.
PER_HISTORY = ("job_id", "result_step_id", "job_notice", "redo_steps")
#: What the uploaders accept (``core.images`` checks the bytes themselves).
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
#: Session key of the `generate` job being watched.
GENERATE_JOB = "generate_job"
GENERATE_PROMPT = "generate_prompt_kept"
#: Session key of an uploaded PNG with a recipe, waiting for the person to choose a new history or Recall.
RECALL_OFFER = "recall_offer"
#: Session key: the steps undone in this session, newest last (Redo goes back to them).
REDO_STEPS = "redo_steps"
#: Ctrl on Windows and Linux, ⌘ on a Mac (Streamlit treats Mod, Ctrl and Cmd alike).
UNDO_SHORTCUT, REDO_SHORTCUT = "Mod+Z", "Mod+Shift+Z"
COMPARE_SLIDER = "compare_slider"
#: Session key of the history tree expander's state (it tracks it, so a closed tree costs nothing).
HISTORY_TREE = "history_tree_open"
#: Root step param: the upload had transparent areas, flattened onto white when it was cleaned.
FLATTENED = "flattened_transparency"
FLATTENED_NOTICE = ("This image had transparent areas; they were flattened onto white (ChatEdit edits images "
                    "without transparency, so those areas are white in every step).")
#: Session key: (history id, version) of the history as the page's last run showed it.
SEEN_VERSION = "history_seen_version"
#: How often the open history is checked for someone else's change, in seconds.
FOLLOW_S = 2.0
#: Session key of the "Review and comments" expander's state (closed: the panel costs nothing).
REVIEW_OPEN = "review_open"


@dataclass(frozen=True)
class Standing:
    """Who looks at the open history and what they may do to it, decided once per run of the page.

    ``writable``: they may change it (chat, run, set as base, undo, select, share); else they only look.
    ``seen_version``: the history's version as the page's previous run showed it, which is what a
    click in this run acts on; a change of base is refused when the history moved since.
    """

    actor: Actor
    history: HistoryRecord
    writable: bool
    seen_version: int

    @property
    def history_id(self) -> int:
        return self.history.id


# ---------------------------------------------------------------- opening a history


def open_history(history_id: int) -> None:
    """Make ``history_id`` the open history (URL and session)."""
    st.query_params["history"] = str(history_id)
    for key in PER_HISTORY:
        st.session_state.pop(key, None)
    st.session_state["open_history"] = history_id


def start_from_upload(services: Services, data: bytes, title: str, *, user_id: int = LOCAL_USER_ID) -> int | str:
    """A new history of ``user_id`` from uploaded bytes: its id, or the sentence saying why the file was refused
    (nothing stored). Starting a history is work only someone who may submit jobs starts (``PermissionDenied``)."""
    access.admit_owners(services, [user_id])
    try:
        loaded = clean_upload(services, data)
    except ImageRejected as exc:
        return f"{exc} Nothing was stored, and the open history (if any) is unchanged."
    stored = store_loaded(services, loaded, user_id=user_id)
    return start_history(services, stored.id, owner_id=user_id, title=title.strip()[:200] or "Upload",
                         root_params={FLATTENED: True} if loaded.flattened else None).history_id


def _start_from_bytes(services: Services, data: bytes, title: str) -> None:
    try:
        started = start_from_upload(services, data, title, user_id=current_actor().id)
    except PermissionDenied as exc:
        started = f"{exc} Nothing was stored."
    if isinstance(started, str):
        st.session_state["upload_error"] = started
        return
    open_history(started)


def deleted_notice(services: Services, history: HistoryRecord, actor: Actor | None = None) -> None:
    """A link to a deleted history says so, with Undo (the history comes back as it was) for whoever may change it
    (``actor``; the person this run acts for when not given)."""
    actor = actor if actor is not None else current_actor()
    name = f"“{history.title}”" if history.title else str(history.id)
    if not access.may_write(actor, history):
        st.warning(f"Edit history {name} was deleted, so it is hidden from the Gallery.")
        return
    st.warning(f"Edit history {name} was deleted, so it is hidden from the Gallery. Undo brings it back as it was.")
    if st.button("Undo", key=f"restore_{history.id}", help="Restore this history."):
        try:
            access.restore(services, actor, history.id)
        except PermissionDenied as exc:
            st.error(str(exc))
            return
        st.session_state.pop("open_history", None)
        st.rerun()


# ---------------------------------------------------------------- recall


def offer_recall(services: Services, data: bytes, file_name: str) -> bool:
    """Keep an uploaded PNG that carries a recipe aside, to offer Recall; False when it carries none."""
    if len(data) > services.settings.max_upload_bytes:
        return False  # refused anyway, with its sentence, when a history is started from it
    recalled = recall_from_png(data)
    if recalled is None:
        return False
    st.session_state[RECALL_OFFER] = {"data": data, "name": file_name, "recall": recalled}
    return True


def recall_sentence(recalled: Recall, file_name: str, *, into_open_history: bool) -> str:
    """What Recall will reload from this file, in one paragraph."""
    made_by = "ChatEdit" if recalled.source == "chatedit" else "an image generator (its parameters text)"
    parts: list[str] = []
    if recalled.commands:
        where = "this history's" if into_open_history else "a new history's"
        n = len(recalled.commands)
        parts.append(f"puts its {n} command{'s' if n != 1 else ''} "
                     f"({'; '.join(command_summary(c) for c in recalled.commands)}) on {where} Operation Board")
    if recalled.settings:
        parts.append("sets your " + ", ".join(f"{k} = {v}" for k, v in recalled.settings.items()))
    text = f"{file_name} was made by {made_by}. Recall " + (" and ".join(parts) if parts else "has nothing to reload")
    text += "."
    if recalled.prompt:
        text += f" Its prompt was “{recalled.prompt[:300]}”."
    if recalled.not_mapped:
        text += " Not mapped (ChatEdit has no such setting): " + ", ".join(recalled.not_mapped) + "."
    return text


def apply_recall(services: Services, recalled: Recall, data: bytes, file_name: str,
                 history_id: int | None, *, user_id: int = LOCAL_USER_ID) -> int | str:
    """Reload the settings into ``user_id``'s preferences and the commands onto the board of ``history_id``
    (a new history from the image when None): the history, or the sentence saying why the file was refused.

    ``history_id`` must be one the person may change (``PermissionDenied``); settings are kept only
    for someone who may change their own (``settings.own``), else listed as not mapped.
    """
    actor = actor_for(services, user_id)
    if history_id is None:
        started = start_from_upload(services, data, file_name.rsplit(".", 1)[0], user_id=user_id)
        if isinstance(started, str):
            return started
        history_id = started
    else:
        access.writable_history(services, actor, history_id)
    preferences = get_preferences(services, user_id)
    kept: dict[str, Any] = {}
    refused: list[str] = []
    for key, value in recalled.settings.items():
        try:
            kept.update(validate_preferences({key: value}))
        except InvalidPreferences:
            refused.append(f"{key} = {value}")
    if kept and not allowed(actor, "settings.own"):
        refused.extend(f"{k} = {v} (your role may not change settings)" for k, v in kept.items())
        kept = {}
    if kept:
        save_preferences(services, {**preferences, **kept}, user_id)
    n = len(recalled.commands)
    lines = [f"Recalled from {file_name}: {n} command{'s' if n != 1 else ''}, now on the Operation Board to check "
             "and run." if n else f"Recalled from {file_name}."]
    if kept:
        lines.append("Your settings now have " + ", ".join(f"{k} = {v}" for k, v in kept.items()) + ".")
    if recalled.prompt:
        lines.append(f"Its prompt was “{recalled.prompt[:300]}”.")
    not_mapped = [*recalled.not_mapped, *refused]
    if not_mapped:
        lines.append("Not mapped: " + ", ".join(not_mapped) + ".")
    add_message(services, history_id, "assistant", " ".join(lines), commands=list(recalled.commands) or None)
    return history_id


def _open_history_id(services: Services, actor: Actor) -> int | None:
    """The history the URL opens, when it exists, is not deleted and ``actor`` may change it (Recall writes to it)."""
    try:
        history = get_history(services, int(st.query_params.get("history", "")))
    except (ValueError, HistoryNotFound):
        return None
    return None if history.deleted or not access.may_write(actor, history) else history.id


def _recall_offer(services: Services) -> None:
    """The choice for an uploaded PNG with a recipe: a new history (the default) or Recall."""
    offer = st.session_state.get(RECALL_OFFER)
    if offer is None:
        return
    actor = current_actor()
    open_id = _open_history_id(services, actor)
    st.info(recall_sentence(offer["recall"], offer["name"], into_open_history=open_id is not None),
            icon=":material/history:")
    if st.button("Start a new history with this image", type="primary", key="recall_start", width="stretch"):
        st.session_state.pop(RECALL_OFFER, None)
        _start_from_bytes(services, offer["data"], offer["name"].rsplit(".", 1)[0])
        st.rerun()
    if st.button("Recall", key="recall_apply", width="stretch",
                 help="Reload its commands onto the Operation Board and its settings into your Settings."):
        st.session_state.pop(RECALL_OFFER, None)
        try:
            outcome = apply_recall(services, offer["recall"], offer["data"], offer["name"], open_id, user_id=actor.id)
        except PermissionDenied as exc:
            outcome = str(exc)
        if isinstance(outcome, str):
            st.session_state["upload_error"] = outcome
        elif outcome != open_id:
            open_history(outcome)
        st.rerun()


def _new_edit_sidebar(services: Services, actor: Actor) -> None:
    with st.sidebar:
        st.subheader("New edit")
        if not can("jobs.submit"):
            st.caption(f"{actor.label} ({actor.role}) may look at the team's histories (open one from the Gallery), "
                       "not start one: that needs an account that may submit jobs.")
            return
        limit_mb = services.settings.max_upload_bytes / 2**20
        upload = st.file_uploader(f"Upload a photo (PNG, JPEG, WebP, BMP or TIFF, up to {limit_mb:g} MB)",
                                  type=UPLOAD_TYPES, key="upload")
        if upload is not None and upload.file_id != st.session_state.get("uploaded_file_id"):
            st.session_state["uploaded_file_id"] = upload.file_id
            if not offer_recall(services, upload.getvalue(), upload.name):
                _start_from_bytes(services, upload.getvalue(), upload.name.rsplit(".", 1)[0])
                st.rerun()
        _recall_offer(services)
        sample = st.selectbox("…or a sample image", list(SAMPLES), index=None, placeholder="Pick a sample",
                              key="sample_choice")
        if st.button("Start with this sample", disabled=sample is None, key="start_sample"):
            _start_from_bytes(services, sample_png(sample), sample)
            st.rerun()
        if st.session_state.get("upload_error"):
            st.error(st.session_state.pop("upload_error"))
        _generate_sidebar(services, actor)


def _generate_sidebar(services: Services, actor: Actor) -> None:
    """"Start from a prompt": a `generate` (txt2img) job whose image starts a new history."""
    st.subheader("Start from a prompt")
    if not services.settings.base_model:
        st.caption("Set CHATEDIT_BASE_MODEL to a Stable Diffusion model (an HF id, a local diffusers folder or a "
                   ".safetensors file) to start a history from words instead of a photo.")
        return
    job_id = st.session_state.get(GENERATE_JOB)
    if job_id is not None:
        watch_job(job_id, doing="Generating", on_end=_generate_ended)
        return
    with st.form("generate", clear_on_submit=False, border=False):
        prompt = st.text_area("Describe the picture", value=st.session_state.get(GENERATE_PROMPT, ""),
                              key="generate_prompt", max_chars=MAX_PROMPT,
                              placeholder="a portrait of a woman in a red coat on a snowy street")
        go = st.form_submit_button("Generate", help=f"Text to image with {services.settings.base_model}, "
                                                    "using your Settings (steps, guidance, seed, scheduler, LoRAs).")
    if go:
        try:
            job_id = submit_generate(services, prompt.strip(), title=prompt.strip()[:80],
                                     user_settings=edit_params(get_preferences(services, actor.id)), user_id=actor.id)
        except (InvalidJobRequest, PermissionDenied) as exc:
            st.error(f"{exc} Nothing was queued.")
            return
        st.session_state[GENERATE_JOB] = job_id
        st.session_state[GENERATE_PROMPT] = prompt  # shown again if the job fails, to try again
        st.rerun()
    if st.session_state.get("generate_error"):
        st.error(st.session_state.pop("generate_error"))


def _generate_ended(job: JobRecord | None) -> None:
    """The `generate` job ended: its history opens, else the sidebar says why (the prompt stays, to try again)."""
    st.session_state.pop(GENERATE_JOB, None)
    if job is None:
        return
    if job.status is JobStatus.SUCCEEDED and job.result and job.result.get("history_id") is not None:
        st.session_state.pop(GENERATE_PROMPT, None)
        open_history(int(job.result["history_id"]))
    elif job.status is JobStatus.CANCELLED:
        st.session_state["generate_error"] = "Generating was cancelled."
    else:
        st.session_state["generate_error"] = f"Generating failed: {job.error_message or 'no reason given'}"


def _current_history(services: Services, actor: Actor) -> HistoryRecord | None:
    """The history the URL opens, if ``actor`` may read it; else the page says why and shows none of it."""
    raw = st.query_params.get("history")
    if raw is None:
        return None
    try:
        history_id = int(raw)
        record = access.readable_history(services, actor, history_id)
    except (ValueError, HistoryNotFound):
        st.error(f"There is no edit history {raw!r}; start a new one from the sidebar.")
        del st.query_params["history"]
        return None
    except PermissionDenied as exc:
        st.error(str(exc))
        st.session_state.pop("open_history", None)
        return None
    if record.deleted:
        deleted_notice(services, record, actor)
        return None
    if st.session_state.get("open_history") != history_id:
        open_history(history_id)
        _resume_last_job(services, history_id)
    return record


def seen_version(history: HistoryRecord) -> int:
    """The version of ``history`` the page's previous run showed (what a click in this run was made on);
    remembers this run's for the next one. The first run of a history has seen what it reads now."""
    last = st.session_state.get(SEEN_VERSION)
    st.session_state[SEEN_VERSION] = (history.id, history.version)
    return last[1] if isinstance(last, tuple) and last[0] == history.id else history.version


def _resume_last_job(services: Services, history_id: int) -> None:
    """After a reload: keep watching a running edit, or show the last result that is not the base yet."""
    job_id = last_job_id(services, history_id)
    if job_id is None:
        return
    try:
        job = services.queue.get(job_id)
    except JobNotFound:
        return
    if not job.terminal:
        st.session_state["job_id"] = job_id
    elif job.status is JobStatus.SUCCEEDED and job.result and job.result.get("step_id") != base_step_id(services,
                                                                                                       history_id):
        st.session_state["result_step_id"] = job.result.get("step_id")


# ---------------------------------------------------------------- the page


def render() -> None:
    services = get_services()
    actor = current_actor()
    _new_edit_sidebar(services, actor)
    history = _current_history(services, actor)
    if history is None:
        st.title("Editor")
        if can("jobs.submit"):
            st.info("Upload a photo or pick a sample image in the sidebar to start a new edit history. "
                    "Then say what to change in the chat, for example “make it brighter”.")
        else:
            st.info("Open a history shared with the team from the Gallery to look at it, its steps and its chat.")
        return
    view = Standing(actor=actor, history=history, writable=access.may_write(actor, history),
                    seen_version=seen_version(history))
    history_id = history.id
    may_submit = can("jobs.submit")
    base_id = base_step_id(services, history_id)
    base = get_step(services, base_id)
    assert base.image_id is not None
    rgb = rgb_of(services, base.image_id)
    rules = load_rules()
    current_selection = sel.current(base.image_id, rgb.shape[:2])
    parts = segments.parts_of(services, base.image_id, user_id=actor.id, may_submit=may_submit)
    labels = planning_labels(rules, parts, current_selection is not None)

    st.title(history.title or f"Edit history {history_id}")
    steps = history_steps(services, history_id)
    st.caption(f"History {history_id} · {len(steps)} step{'s' if len(steps) != 1 else ''} · "
               f"base is step {base_id}. Every step is kept in the Gallery.")
    _sharing(services, view)
    if not segments.configured(services):
        st.info("No segmenter is configured, so named parts (Hair, Background …) are not found automatically. "
                "Whole-image commands such as “make it brighter” work as they are; to edit one part, select it "
                "with the brush or a click under **Selection tools** and say e.g. “make the selection red”. "
                "To find parts automatically, run `chatedit models install-default`, or set CHATEDIT_SEGMENTER "
                "to an ONNX model made by "
                "`chatedit models export-segmenter`.", icon="ℹ️")
    if any(s.parent_id is None and (s.params or {}).get(FLATTENED) for s in steps):
        st.info(FLATTENED_NOTICE, icon=":material/layers_clear:")
    segments.render_parts(base.image_id, parts, may_retry=may_submit)
    notice = st.session_state.get("job_notice")  # stays until the next run, set-as-base or undo replaces it
    if notice:
        (st.success if notice[0] == "ok" else st.error)(notice[1])

    shown = None
    if parts.record is not None and st.session_state.get(segments.SHOW_OVERLAY):
        shown = segments.parts_overlay(rgb, parts.record)
    result = _images(services, view, base, steps, shown)
    _review(services, view, result if result is not None else base, is_base=result is None)
    if view.writable:
        label_map = segments.label_map_for(parts.record, rgb.shape[:2]) if parts.record is not None else None
        with st.expander("Selection tools (brush, eraser, click to select)", expanded=current_selection is not None):
            sel.render_tools(base.image_id, rgb, label_map)
        with st.expander("Swap face"):
            _swap_face(services, view, base)

    chat_col, board_col = st.columns([1, 1], gap="large")
    with chat_col:
        _chat(services, view, labels, base.image_id)
    with board_col:
        _board(services, view, base, labels, rules, current_selection)
    _follow(history_id, history.version)


def _sharing(services: Services, view: Standing) -> None:
    """Who sees this history: the owner (or an admin) shares it with the team or keeps it private; anyone
    else is told whose it is and that they only look."""
    history = view.history
    shared = history.visibility == "team"
    owner = "your" if history.owner_id == view.actor.id else f"{actor_for(services, history.owner_id).label}'s"
    if not view.writable:
        st.caption(f"{owner[0].upper()}{owner[1:]} history: you can look, not change it.")
        return
    on = st.toggle("Shared with the team", value=shared, key=f"share_{history.id}_{history.visibility}",
                   help="On: everyone who may read the team's histories sees it, its steps and its chat; only its "
                        "owner and admins change it. Off: only its owner and admins see it.")
    st.caption(("Shared with the team: everyone who may read the team's histories sees it."
                if shared else "Private: only its owner and admins see it.")
               + ("" if owner == "your" else f" This is {owner} history; you may change it as an admin."))
    if on != shared:
        try:
            access.share(services, view.actor, history.id, "team" if on else "private")
        except PermissionDenied as exc:
            st.error(str(exc))
            return
        st.rerun()


def _review(services: Services, view: Standing, step: Any, *, is_base: bool) -> None:
    """The review and comments of the step on show (the result, else the base), drawn only while open."""
    panel = st.expander("Review and comments", key=REVIEW_OPEN, on_change="rerun")
    if panel.open:
        with panel:
            st.caption(f"Step {step.id}, the {'base' if is_base else 'result on show'}.")
            review_panel(services, view.actor, step.id, image_id=step.image_id, key_prefix="editor_review")


@st.fragment(run_every=FOLLOW_S)
def _follow(history_id: int, rendered_version: int) -> None:
    """Someone else's change to the open history (a new step, another base, a rename) shows within ``FOLLOW_S``
    seconds: when its version differs from the one this page showed, the whole page runs again (one small query)."""
    try:
        now = history_version(get_services(), history_id).version
    except HistoryNotFound:
        st.rerun(scope="app")
    if now != rendered_version:
        st.rerun(scope="app")


def planning_labels(rules: Rules, parts: segments.PartsState, has_selection: bool) -> list[str]:
    """What commands may target: the parts this image really has (+ Selection when something is selected).

    While the parts are still being found, the usual human-parsing labels stand in (the
    edit job checks them against the image's segmentation); when they cannot be found,
    only the selection and the whole image remain.
    """
    if parts.record is not None:
        labels = list(parts.labels)
    elif parts.pending:
        labels = list(rules.default_labels)
    else:
        labels = []
    if has_selection:
        labels.append(rules.selection_label)
    return labels


# ---------------------------------------------------------------- face swap


def face_swap_problem(services: Services) -> str | None:
    """Which files face swap still needs, and where they go; None when both settings name something."""
    settings = services.settings
    if settings.face_analysis_dir and settings.face_swap_model:
        return None
    return ("Face swap needs two sets of models, not configured here. Put the insightface face analysis models "
            "(for example the buffalo_l pack: its det_10g.onnx detector and w600k_r50.onnx recogniser) in one folder "
            "and set CHATEDIT_FACE_ANALYSIS_DIR to that folder; set CHATEDIT_FACE_SWAP_MODEL to the inswapper_128.onnx "
            "file. Then restart `chatedit serve`.")


def _swap_face(services: Services, view: Standing, base: Any) -> None:
    """Upload a face photo; a `swap_face` job puts its largest face on the base's largest face, as a new step."""
    problem = face_swap_problem(services)
    if problem is not None:
        st.info(problem)
        return
    st.caption("The largest face in your photo replaces the largest face in the base image; the result appears "
               "beside the base like an edit.")
    face = st.file_uploader("Face photo", type=UPLOAD_TYPES, key="swap_face_upload")
    running = st.session_state.get("job_id") is not None
    if st.button("Swap face", key="swap_face_run", disabled=face is None or running, type="primary"):
        assert face is not None
        queued = start_face_swap(services, view.history_id, base, face.getvalue(), user_id=view.actor.id)
        if isinstance(queued, str):
            st.error(queued)
            return
        _watch(queued)


def start_face_swap(services: Services, history_id: int, base: Any, face_photo: bytes, *,
                    user_id: int = LOCAL_USER_ID) -> int | str:
    """Queue ``user_id``'s `swap_face` job from the face photo onto the base step: its id, or the sentence saying
    why not (someone who may not change the history or submit jobs included)."""
    try:
        access.require_history_write(services, user_id, history_id)
        access.admit_owners(services, [user_id])
    except PermissionDenied as exc:
        return f"{exc} Nothing was queued."
    try:
        source = store_upload(services, face_photo, user_id=user_id)
    except ImageRejected as exc:
        return f"{exc} Nothing was queued."
    try:
        job_id = submit_swap_face(services, source_image_id=source.id, target_image_id=base.image_id,
                                  history_id=history_id, parent_step_id=base.id, user_id=user_id)
    except (InvalidJobRequest, PermissionDenied) as exc:
        return f"{exc} Nothing was queued."
    set_last_job(services, history_id, job_id, by=user_id)
    return job_id


def _watch(job_id: int) -> None:
    """Show this job's progress where results appear (it lands there like an edit)."""
    st.session_state["job_id"] = job_id
    st.session_state.pop("job_notice", None)
    st.session_state.pop("result_step_id", None)
    st.rerun()


# ---------------------------------------------------------------- before / after


def redo_target(steps: Sequence[Any], base_id: int, undone: Sequence[int]) -> int | None:
    """The step Redo makes the base again: the step last undone from this base in this session, else the
    base's newest child (after a reload, or once the base moved elsewhere); None when the base has no child."""
    children = [s.id for s in steps if s.parent_id == base_id]
    if undone and undone[-1] in children:
        return undone[-1]
    return max(children, default=None)


def _images(services: Services, view: Standing, base: Any, steps: list[Any], shown: np.ndarray | None) -> Any | None:
    """The base and the result side by side (with Undo, Redo and Set as base for whoever may change the history);
    returns the step shown as the result, if any."""
    history_id = view.history_id
    result = _shown_result(services)
    before, after = st.columns(2, gap="medium")
    with before:
        st.subheader("Base")
        st.image(preview_of(services, base.image_id) if shown is None else shown, width="stretch",
                 caption=None if shown is None else "Each part tinted in its own colour")
        buttons = st.container(horizontal=True)  # each button as wide as its label and shortcut hint
        buttons.download_button("Download PNG", data=png_download(services, base.image_id), mime="image/png",
                                file_name=f"chatedit-h{history_id}-step{base.id}.png", key="download_base",
                                help="The image with its recipe (commands and parameters) embedded.")
        target = redo_target(steps, base.id, st.session_state.get(REDO_STEPS, []))
        if view.writable and buttons.button("Undo", key="undo", disabled=base.parent_id is None,
                                            shortcut=UNDO_SHORTCUT,
                                            help="Go back to the step before this base (Ctrl+Z; ⌘Z on a Mac)."):
            _undo(services, view, base)
        if view.writable and buttons.button("Redo", key="redo", disabled=target is None, shortcut=REDO_SHORTCUT,
                                            help="Go forward again to the step you undid "
                                                 "(Ctrl+Shift+Z; ⇧⌘Z on a Mac)."):
            assert target is not None
            _redo(services, view, target)
    with after:
        st.subheader("Result")
        job_id = st.session_state.get("job_id")
        if job_id is not None:
            watch_job(job_id, doing=lambda job: _noun(job).capitalize(), on_end=_edit_ended, preview=_edit_preview,
                      cancellable=view.writable)
        elif result is not None:
            assert result.image_id is not None
            shown_result = preview_of(services, result.image_id)
            if st.toggle("Compare with a slider", key=COMPARE_SLIDER,
                         help="The base and the result in the same place: drag the divider, or focus it and use "
                              "the arrow keys. Off: side by side."):
                render_compare(preview_of(services, base.image_id), shown_result, image_size(shown_result),
                               before_label="Base", after_label="Result")
            else:
                st.image(shown_result, width="stretch")
            st.caption(("Ran: " + "; ".join(command_summary(c) for c in result.commands)) if result.commands
                       else f"Ran: {step_kind(result)}")
            r1, r2 = st.columns(2)
            if view.writable and r1.button("Set as base", type="primary", key="set_base",
                                           help="Continue editing from this result."):
                if _change_base(services, view, result.id):
                    st.session_state.pop("result_step_id", None)
                    st.session_state["job_notice"] = ("ok", f"Step {result.id} is the new base.")
                    st.rerun()
            r2.download_button("Download PNG", data=png_download(services, result.image_id), mime="image/png",
                               file_name=f"chatedit-h{history_id}-step{result.id}.png", key="download_result",
                               help="The image with its recipe (commands and parameters) embedded.")
        elif view.writable:
            st.info("Run commands from the Operation Board; the result appears here, beside the base.")
        else:
            st.caption("Open a step from the history tree to see it here, beside the base.")
    tree = st.expander(f"History tree: {len(steps)} step{'s' if len(steps) != 1 else ''}, click one to open it",
                       key=HISTORY_TREE, on_change="rerun")
    if tree.open:  # thumbnails are only sent while someone looks at them
        with tree:
            render_tree(services, steps, base.id, key="editor_tree", on_open=_open_step,
                        selected=result.id if result is not None else None)
    return result


def _shown_result(services: Services) -> Any | None:
    """The step shown as the result (the last edit's, an undone one, or one opened from the tree), if any."""
    result_id = st.session_state.get("result_step_id")
    if result_id is None:
        return None
    try:
        return get_step(services, result_id)
    except StepNotFound:
        st.session_state.pop("result_step_id", None)
        return None


def _change_base(services: Services, view: Standing, step_id: int) -> bool:
    """Make ``step_id`` the base as the person on the page, on the version they saw. Refused (someone changed the
    history since, or they may not): nothing changes, the sentence becomes the page's notice and the page runs
    again (the run stops here)."""
    try:
        access.change_base(services, view.actor, view.history_id, step_id, seen_version=view.seen_version)
    except (StaleHistory, PermissionDenied, StepNotFound) as exc:
        # The page's notice, not a one-run st.error: the run that draws another person's new base is followed at
        # once by another (the new image's selection canvas reports its size), which wiped a one-run sentence.
        st.session_state["job_notice"] = ("error", str(exc))
        st.rerun()
    return True


def _undo(services: Services, view: Standing, base: Any) -> None:
    """The base goes back to its parent; the undone step stays on show and on the redo list."""
    if not _change_base(services, view, base.parent_id):
        return
    st.session_state[REDO_STEPS] = [*st.session_state.get(REDO_STEPS, []), base.id]
    st.session_state["result_step_id"] = base.id
    text = (f"Undone: the base is step {base.parent_id} again. The undone step is shown as the result "
            "(Redo or Set as base brings it back).")
    st.session_state["job_notice"] = ("ok", text)
    st.rerun()


def _redo(services: Services, view: Standing, target: int) -> None:
    if not _change_base(services, view, target):
        return
    undone = list(st.session_state.get(REDO_STEPS, []))
    if undone and undone[-1] == target:
        undone.pop()
    st.session_state[REDO_STEPS] = undone
    if st.session_state.get("result_step_id") == target:
        st.session_state.pop("result_step_id", None)
    st.session_state["job_notice"] = ("ok", f"Redone: step {target} is the base again.")
    st.rerun()


def _open_step(step_id: int) -> None:
    """A step clicked in the history tree is shown as the result, ready for Set as base (the base itself: nothing)."""
    services = get_services()
    history_id = st.session_state.get("open_history")
    if history_id is not None and step_id == base_step_id(services, history_id):
        st.session_state.pop("result_step_id", None)
    else:
        st.session_state["result_step_id"] = step_id


def done_sentence(result: dict[str, Any]) -> str:
    """The notice when a job succeeds: what ran, as a person reads it, then what the worker noted."""
    ran = [command_summary(c) for c in result.get("commands") or []]
    text = ("Done: " + "; ".join(ran) + ".") if ran else "Done."
    return " ".join([text, *(str(note) for note in result.get("notes") or [])])


def _noun(job: JobRecord) -> str:
    return "face swap" if job.kind == SWAP_FACE_KIND else "edit"


def _edit_ended(job: JobRecord | None) -> None:
    """The edit ended: the page shows its result, or the reason there is none."""
    st.session_state.pop("job_id", None)
    if job is None:
        st.session_state["job_notice"] = ("error", "The job is gone; the base is unchanged.")
    elif job.status is JobStatus.SUCCEEDED and job.result:
        st.session_state["result_step_id"] = job.result.get("step_id")
        st.session_state["job_notice"] = ("ok", done_sentence(job.result))
    elif job.status is JobStatus.CANCELLED:
        st.session_state["job_notice"] = ("error", f"The {_noun(job)} was cancelled; the base is unchanged.")
    else:
        st.session_state["job_notice"] = ("error", f"The {_noun(job)} failed: {job.error_message or 'no reason given'}")


def _edit_preview(services: Services, job: JobRecord) -> bytes | None:
    """The worker's latest preview of the running diffusion, if it made one."""
    key = latest_preview_key(services, job.id)
    return None if key is None else services.blobs.get(key)


# ---------------------------------------------------------------- chat


def _chat(services: Services, view: Standing, labels: list[str], image_id: int) -> None:
    history_id, user_id = view.history_id, view.actor.id
    head, advise_col = st.columns([3, 1])
    head.subheader("Chat")
    if view.writable and services.settings.vision_model and advise_col.button(
            "Advise", key="advise", help=f"Ask {services.settings.vision_model} to look at the base image and "
                                         "suggest edits; the suggestions land on the Operation Board."):
        try:
            chat.advise_image(services, history_id, png_of(services, image_id), labels, user_id=user_id)
        except PermissionDenied as exc:
            st.error(str(exc))
            return
        st.rerun()
    history = messages(services, history_id)
    box = st.container(height=360)
    with box:
        if not history:
            st.caption("Say what to change: “make it brighter”, “increase the contrast and warm it up”, "
                       "“make the selection blue”, “把图片调亮一点”.")
        for message in history:
            with st.chat_message(message.role):
                st.markdown(message.content)
    pending = pending_plan_job(services, history_id)
    if pending is not None:
        chat.plan_job_panel(pending, history_id, cancellable=view.writable)
    if not view.writable:
        return
    choice, model = chat.planner_choice(services, user_id), chat.planner_model(services, user_id)
    name = choice.planner
    detail = (f" · model `{model}`" if name == "openai" and model else
              f" · fine-tuned `{choice.model.name}`" if choice.model is not None else "")
    st.caption(f"Planner: **{name}**{detail} (change it in Settings).")
    prompt = st.chat_input("Say what to change, e.g. “make it brighter”", key="chat_prompt",
                           disabled=pending is not None)
    if prompt and prompt.strip():
        try:
            chat.ask(services, history_id, prompt.strip(), labels, box, user_id=user_id)
        except PermissionDenied as exc:
            st.error(str(exc))
            return
        st.rerun()


# ---------------------------------------------------------------- operation board


def _board(services: Services, view: Standing, base: Any, labels: list[str], rules: Rules,
           current_selection: np.ndarray | None) -> None:
    history_id = view.history_id
    st.subheader("Operation Board")
    source = latest_reply(messages(services, history_id))
    if source is None:
        st.caption("The commands of the assistant's latest reply appear here, to check, adjust and run.")
        return
    if not source.commands:
        st.caption("The latest reply has no commands, so there is nothing to run. Say what to change in the chat; "
                   "the commands of the next reply appear here.")
        return
    if not view.writable:  # the commands as they read, nothing to adjust or run
        st.markdown("\n".join(f"- {command_summary(item)}" for item in source.commands))
        return
    running = st.session_state.get("job_id") is not None
    problems = backend_problems(source.commands, services.settings,
                                edit_params(get_preferences(services, view.actor.id)))
    rows: list[tuple[bool, dict[str, Any] | None]] = []
    for i, item in enumerate(source.commands):
        rows.append(_board_row(f"{source.id}_{i}", item, labels, rules, problems.get(i)))
    chosen = [cmd for picked, cmd in rows if picked and cmd is not None]
    valid = [cmd for _, cmd in rows if cmd is not None]
    left, right = st.columns(2)
    run_selected = left.button("Run selected", key="run_selected", disabled=running or not chosen, type="primary")
    run_all = right.button("Run all", key="run_all", disabled=running or not valid)
    if run_selected or run_all:
        _run(services, view, base, chosen if run_selected else valid, current_selection)


def latest_reply(history: Sequence[MessageRecord]) -> MessageRecord | None:
    """The assistant's latest reply: the board shows its commands, and a reply without commands empties it."""
    return next((m for m in reversed(history) if m.role == "assistant"), None)


def _board_row(key: str, item: dict[str, Any], labels: list[str], rules: Rules,
               backend_problem: str | None = None) -> tuple[bool, dict[str, Any] | None]:
    """One command: checkbox, readable summary, its paras as inputs, the reason in red when it is invalid;
    greyed and unticked, with the setting that enables it, when no configured backend can run it."""
    with st.container(border=True):
        name = item.get("command")
        rule = rules.commands.get(name) if isinstance(name, str) else None
        if rule is None or not isinstance(item.get("paras"), list):
            st.checkbox(command_summary(item), value=False, disabled=True, key=f"pick_{key}")
            st.markdown(f":red[{item.get('reason') or 'This is not a command ChatEdit knows.'}]")
            return False, None
        if not rule.executable:
            text = " ".join(str(p) for p in item["paras"] if not isinstance(p, list))
            st.markdown(f":material/lightbulb: **Advice:** {text}")
            st.caption("Advice only: shown, never run.")
            return False, None
        paras = list(item["paras"])
        edited: list[Any] = []
        columns = st.columns(max(1, len(rule.paras)))
        for j, para in enumerate(rule.paras):
            value = paras[j] if j < len(paras) else None
            with columns[j]:
                edited.append(_para_input(f"para_{key}_{j}", para, value, labels, disabled=backend_problem is not None))
        candidate = {"command": name, "paras": edited}
        outcome = validate_item(candidate, labels, rules)
        ok = not isinstance(outcome, str)
        runnable = ok and backend_problem is None
        picked = st.checkbox(f"**{command_summary(candidate)}**", value=runnable, disabled=not runnable,
                             key=f"pick_{key}_{ok}_{backend_problem is None}", help=rule.description)
        if not ok:
            st.markdown(f":red[{outcome}]")
        if backend_problem is not None:
            st.caption(f":material/block: Not available here: {backend_problem}")
        return picked and runnable, candidate if runnable else None


def _para_input(key: str, para: ParaRule, value: Any, labels: list[str], *, disabled: bool = False) -> Any:
    label = para.name.capitalize()
    if para.type == "targets":
        current = [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
        options = list(dict.fromkeys([*labels, *current]))
        chosen = st.multiselect(label, options, default=current, key=key, disabled=disabled,
                                placeholder="whole image" if para.allow_empty else "choose parts")
        return list(chosen)
    if para.type == "enum":
        index = para.enum.index(value) if value in para.enum else 0
        return st.selectbox(label, para.enum, index=index, key=key, disabled=disabled)
    if para.type == "number":
        # No bounds on the input: an out-of-range value stays as written and the row says why it is refused.
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        return st.number_input(label, value=number, step=0.05, key=key, format="%.2f", disabled=disabled,
                               help=f"A number in {para.interval}.")
    return st.text_input(label, value="" if value is None else str(value), key=key, disabled=disabled)


def _run(services: Services, view: Standing, base: Any, commands: list[dict[str, Any]],
         current_selection: np.ndarray | None) -> None:
    history_id, user_id = view.history_id, view.actor.id
    preferences = get_preferences(services, user_id)
    request = EditRequest(
        image_id=base.image_id, commands=commands, history_id=history_id, parent_step_id=base.id,
        selection_key=sel.blob_key(services, current_selection), user_settings=edit_params(preferences),
        user_id=user_id,
    )
    try:
        job_id = submit_edit(services, request)
    except InvalidEdit as exc:
        st.error(f"These commands cannot run: {exc}")
        return
    except (InvalidJobRequest, PermissionDenied) as exc:  # e.g. as many jobs queued as one may; a viewer
        st.error(f"{exc} Nothing was queued.")
        return
    set_last_job(services, history_id, job_id, by=user_id)
    _watch(job_id)
