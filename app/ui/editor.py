"""The Editor page: start a history, chat, pick commands on the Operation Board, run them, review, set as base, undo.

The open history lives in the URL (``?history=ID``), so a reload or a shared link opens
the same history, its conversation and its base step again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from app.ui import chat, segments
from app.ui import selection as sel
from app.ui.common import command_summary, get_services, job_progress, png_of, rgb_of
from app.ui.samples import SAMPLES, sample_png
from core.commands import validate_item
from core.images import ImageRejected
from core.rules import ParaRule, Rules, load_rules
from jobs.conversations import messages, pending_plan_job
from jobs.edits import EditRequest, InvalidEdit, submit_edit
from jobs.errors import InvalidJobRequest, JobNotFound
from jobs.gallery import base_step_id, last_job_id, set_base_step, set_last_job
from jobs.handlers.generate import MAX_PROMPT, submit_generate
from jobs.handlers.swap_face import SWAP_FACE_KIND, submit_swap_face
from jobs.histories import (
    HistoryNotFound,
    StepNotFound,
    get_history,
    get_step,
    history_steps,
    start_history,
)
from jobs.images import store_upload
from jobs.services import Services
from jobs.user_settings import edit_params, get_preferences

#: Session keys of the open history; reset when another history opens.
PER_HISTORY = ("job_id", "result_step_id", "job_notice", "board_source")
POLL_S = 0.5
#: What the uploaders accept (``core.images`` checks the bytes themselves).
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
#: Session key of the `generate` job being watched.
GENERATE_JOB = "generate_job"
GENERATE_PROMPT = "generate_prompt_kept"


# ---------------------------------------------------------------- opening a history


def open_history(history_id: int) -> None:
    """Make ``history_id`` the open history (URL and session)."""
    st.query_params["history"] = str(history_id)
    for key in PER_HISTORY:
        st.session_state.pop(key, None)
    st.session_state["open_history"] = history_id


def start_from_upload(services: Services, data: bytes, title: str) -> int | str:
    """A new history from uploaded bytes: its id, or the sentence saying why the file was refused (nothing stored)."""
    try:
        stored = store_upload(services, data)
    except ImageRejected as exc:
        return f"{exc} Nothing was stored, and the open history (if any) is unchanged."
    return start_history(services, stored.id, title=title.strip()[:200] or "Upload").history_id


def _start_from_bytes(services: Services, data: bytes, title: str) -> None:
    started = start_from_upload(services, data, title)
    if isinstance(started, str):
        st.session_state["upload_error"] = started
        return
    open_history(started)


def _new_edit_sidebar(services: Services) -> None:
    with st.sidebar:
        st.subheader("New edit")
        limit_mb = services.settings.max_upload_bytes / 2**20
        upload = st.file_uploader(f"Upload a photo (PNG, JPEG, WebP, BMP or TIFF, up to {limit_mb:g} MB)",
                                  type=UPLOAD_TYPES, key="upload")
        if upload is not None and upload.file_id != st.session_state.get("uploaded_file_id"):
            st.session_state["uploaded_file_id"] = upload.file_id
            _start_from_bytes(services, upload.getvalue(), upload.name.rsplit(".", 1)[0])
            st.rerun()
        sample = st.selectbox("…or a sample image", list(SAMPLES), index=None, placeholder="Pick a sample",
                              key="sample_choice")
        if st.button("Start with this sample", disabled=sample is None, key="start_sample"):
            _start_from_bytes(services, sample_png(sample), sample)
            st.rerun()
        if st.session_state.get("upload_error"):
            st.error(st.session_state.pop("upload_error"))
        _generate_sidebar(services)


def _generate_sidebar(services: Services) -> None:
    """"Start from a prompt": a `generate` (txt2img) job whose image starts a new history."""
    st.subheader("Start from a prompt")
    if not services.settings.base_model:
        st.caption("Set CHATEDIT_BASE_MODEL to a Stable Diffusion model (an HF id, a local diffusers folder or a "
                   ".safetensors file) to start a history from words instead of a photo.")
        return
    job_id = st.session_state.get(GENERATE_JOB)
    if job_id is not None:
        _generate_panel(job_id)
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
                                     user_settings=edit_params(get_preferences(services)))
        except InvalidJobRequest as exc:
            st.error(f"{exc} Nothing was queued.")
            return
        st.session_state[GENERATE_JOB] = job_id
        st.session_state[GENERATE_PROMPT] = prompt  # shown again if the job fails, to try again
        st.rerun()
    if st.session_state.get("generate_error"):
        st.error(st.session_state.pop("generate_error"))


@st.fragment(run_every=POLL_S)
def _generate_panel(job_id: int) -> None:
    """The `generate` job's progress and Cancel; when it succeeds its history opens, else the reason is shown."""
    services = get_services()
    try:
        job = services.queue.get(job_id)
    except JobNotFound:
        st.session_state.pop(GENERATE_JOB, None)
        st.rerun(scope="app")
    if job.terminal:
        st.session_state.pop(GENERATE_JOB, None)
        if job.status.value == "succeeded" and job.result and job.result.get("history_id") is not None:
            st.session_state.pop(GENERATE_PROMPT, None)
            open_history(int(job.result["history_id"]))
        elif job.status.value == "cancelled":
            st.session_state["generate_error"] = "Generating was cancelled."
        else:
            st.session_state["generate_error"] = f"Generating failed: {job.error_message or 'no reason given'}"
        st.rerun(scope="app")
    job_progress(services, job, "Generating")
    if st.button("Cancel", key=f"cancel_generate_{job_id}", disabled=job.cancel_requested):
        services.queue.cancel(job_id)
        st.rerun(scope="fragment")


def _current_history(services: Services) -> int | None:
    raw = st.query_params.get("history")
    if raw is None:
        return None
    try:
        history_id = int(raw)
        get_history(services, history_id)
    except (ValueError, HistoryNotFound):
        st.error(f"There is no edit history {raw!r}; start a new one from the sidebar.")
        del st.query_params["history"]
        return None
    if st.session_state.get("open_history") != history_id:
        open_history(history_id)
        _resume_last_job(services, history_id)
    return history_id


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
    elif job.status.value == "succeeded" and job.result and job.result.get("step_id") != base_step_id(services,
                                                                                                       history_id):
        st.session_state["result_step_id"] = job.result.get("step_id")


# ---------------------------------------------------------------- the page


def render() -> None:
    services = get_services()
    _new_edit_sidebar(services)
    history_id = _current_history(services)
    if history_id is None:
        st.title("Editor")
        st.info("Upload a photo or pick a sample image in the sidebar to start a new edit history. "
                "Then say what to change in the chat, for example “make it brighter”.")
        return
    history = get_history(services, history_id)
    base_id = base_step_id(services, history_id)
    base = get_step(services, base_id)
    assert base.image_id is not None
    rgb = rgb_of(services, base.image_id)
    rules = load_rules()
    current_selection = sel.current(base.image_id, rgb.shape[:2])
    parts = segments.parts_of(services, base.image_id)
    labels = planning_labels(rules, parts, current_selection is not None)

    st.title(history.title or f"Edit history {history_id}")
    steps = history_steps(services, history_id)
    st.caption(f"History {history_id} · {len(steps)} step{'s' if len(steps) != 1 else ''} · "
               f"base is step {base_id}. Every step is kept in the Gallery.")
    if services.settings.segmenter is None:
        st.info("No segmenter is configured, so named parts (Hair, Background …) are not found automatically. "
                "Whole-image commands such as “make it brighter” work as they are; to edit one part, select it "
                "with the brush or a click under **Selection tools** and say e.g. “make the selection red”. "
                "To find parts automatically, set CHATEDIT_SEGMENTER to an ONNX model made by "
                "`chatedit models export-segmenter`.", icon="ℹ️")
    segments.render_parts(base.image_id, parts)
    notice = st.session_state.get("job_notice")  # stays until the next run, set-as-base or undo replaces it
    if notice:
        (st.success if notice[0] == "ok" else st.error)(notice[1])

    shown = None
    if parts.record is not None and st.session_state.get(segments.SHOW_OVERLAY):
        shown = segments.parts_overlay(rgb, parts.record)
    _images(services, history_id, base, steps, shown)
    label_map = segments.label_map_for(parts.record, rgb.shape[:2]) if parts.record is not None else None
    with st.expander("Selection tools (brush, eraser, click to select)", expanded=current_selection is not None):
        sel.render_tools(base.image_id, rgb, label_map)
    with st.expander("Swap face"):
        _swap_face(services, history_id, base)

    chat_col, board_col = st.columns([1, 1], gap="large")
    with chat_col:
        _chat(services, history_id, labels, base.image_id)
    with board_col:
        _board(services, history_id, base, labels, rules, current_selection)


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


def _swap_face(services: Services, history_id: int, base: Any) -> None:
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
        queued = start_face_swap(services, history_id, base, face.getvalue())
        if isinstance(queued, str):
            st.error(queued)
            return
        _watch(queued)


def start_face_swap(services: Services, history_id: int, base: Any, face_photo: bytes) -> int | str:
    """Queue a `swap_face` job from the face photo onto the base step: its id, or the sentence saying why not."""
    try:
        source = store_upload(services, face_photo)
    except ImageRejected as exc:
        return f"{exc} Nothing was queued."
    try:
        job_id = submit_swap_face(services, source_image_id=source.id, target_image_id=base.image_id,
                                  history_id=history_id, parent_step_id=base.id)
    except InvalidJobRequest as exc:
        return f"{exc} Nothing was queued."
    set_last_job(services, history_id, job_id)
    return job_id


def _watch(job_id: int) -> None:
    """Show this job's progress where results appear (it lands there like an edit)."""
    st.session_state["job_id"] = job_id
    st.session_state.pop("job_notice", None)
    st.session_state.pop("result_step_id", None)
    st.rerun()


# ---------------------------------------------------------------- before / after


def _images(services: Services, history_id: int, base: Any, steps: list[Any], shown: np.ndarray | None) -> None:
    before, after = st.columns(2, gap="medium")
    with before:
        st.subheader("Base")
        st.image(png_of(services, base.image_id) if shown is None else shown, width="stretch",
                 caption=None if shown is None else "Each part tinted in its own colour")
        b1, b2 = st.columns(2)
        b1.download_button("Download PNG", data=png_of(services, base.image_id), mime="image/png",
                           file_name=f"chatedit-h{history_id}-step{base.id}.png", key="download_base",
                           help="The image with its recipe (commands and parameters) embedded.")
        if b2.button("Undo", key="undo", disabled=base.parent_id is None,
                     help="Go back to the step before this base."):
            set_base_step(services, history_id, base.parent_id)
            st.session_state["result_step_id"] = base.id
            st.session_state["job_notice"] = ("ok", f"Undone: the base is step {base.parent_id} again. "
                                                    "The undone step is shown as the result (Set as base redoes it).")
            st.rerun()
    with after:
        st.subheader("Result")
        job_id = st.session_state.get("job_id")
        result_id = st.session_state.get("result_step_id")
        if job_id is not None:
            _job_panel(job_id)
        elif result_id is not None:
            try:
                result = get_step(services, result_id)
            except StepNotFound:
                st.session_state.pop("result_step_id", None)
                return
            assert result.image_id is not None
            st.image(png_of(services, result.image_id), width="stretch")
            st.caption(("Ran: " + "; ".join(command_summary(c) for c in result.commands)) if result.commands
                       else f"Ran: {step_kind(result)}")
            r1, r2 = st.columns(2)
            if r1.button("Set as base", type="primary", key="set_base",
                         help="Continue editing from this result."):
                set_base_step(services, history_id, result_id)
                st.session_state.pop("result_step_id", None)
                st.session_state["job_notice"] = ("ok", f"Step {result_id} is the new base.")
                st.rerun()
            r2.download_button("Download PNG", data=png_of(services, result.image_id), mime="image/png",
                               file_name=f"chatedit-h{history_id}-step{result_id}.png", key="download_result",
                               help="The image with its recipe (commands and parameters) embedded.")
        else:
            st.info("Run commands from the Operation Board; the result appears here, beside the base.")


def step_kind(step: Any) -> str:
    """What made a step that has no commands (a face swap, a generated image)."""
    generation = (step.params or {}).get("generation") or []
    kind = generation[0].get("command") if generation and isinstance(generation[0], dict) else None
    return {"swap_face": "face swap", "generate": "text to image"}.get(str(kind), "no commands")


@st.fragment(run_every=POLL_S)
def _job_panel(job_id: int) -> None:
    """The running edit: progress from the worker, Cancel; on the end, the page shows the result or the reason."""
    services = get_services()
    job = services.queue.get(job_id)
    noun = "face swap" if job.kind == SWAP_FACE_KIND else "edit"
    if job.terminal:
        st.session_state.pop("job_id", None)
        if job.status.value == "succeeded" and job.result:
            st.session_state["result_step_id"] = job.result.get("step_id")
            notes = job.result.get("notes") or []
            st.session_state["job_notice"] = ("ok", "Done. " + " ".join(notes) if notes else "Done.")
        elif job.status.value == "cancelled":
            st.session_state["job_notice"] = ("error", f"The {noun} was cancelled; the base is unchanged.")
        else:
            st.session_state["job_notice"] = ("error", f"The {noun} failed: {job.error_message or 'no reason given'}")
        st.rerun(scope="app")
    job_progress(services, job, noun.capitalize())
    if st.button("Cancel", key=f"cancel_{job_id}", disabled=job.cancel_requested):
        services.queue.cancel(job_id)
        st.rerun(scope="fragment")


# ---------------------------------------------------------------- chat


def _chat(services: Services, history_id: int, labels: list[str], image_id: int) -> None:
    head, advise_col = st.columns([3, 1])
    head.subheader("Chat")
    if services.settings.vision_model and advise_col.button(
            "Advise", key="advise", help=f"Ask {services.settings.vision_model} to look at the base image and "
                                         "suggest edits; the suggestions land on the Operation Board."):
        chat.advise_image(services, history_id, png_of(services, image_id), labels)
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
        chat.plan_job_panel(pending, history_id)
    name, model = chat.planner_name(services), chat.planner_model(services)
    st.caption(f"Planner: **{name}**" + (f" · model `{model}`" if name == "openai" and model else "")
               + " (change it in Settings).")
    prompt = st.chat_input("Say what to change, e.g. “make it brighter”", key="chat_prompt",
                           disabled=pending is not None)
    if prompt and prompt.strip():
        chat.ask(services, history_id, prompt.strip(), labels, box)
        st.rerun()


# ---------------------------------------------------------------- operation board


def _board(services: Services, history_id: int, base: Any, labels: list[str], rules: Rules,
           current_selection: np.ndarray | None) -> None:
    st.subheader("Operation Board")
    source = next((m for m in reversed(messages(services, history_id)) if m.role == "assistant" and m.commands), None)
    if source is None:
        st.caption("The commands of the assistant's latest reply appear here, to check, adjust and run.")
        return
    running = st.session_state.get("job_id") is not None
    rows: list[tuple[bool, dict[str, Any] | None]] = []
    for i, item in enumerate(source.commands or []):
        rows.append(_board_row(f"{source.id}_{i}", item, labels, rules))
    chosen = [cmd for picked, cmd in rows if picked and cmd is not None]
    valid = [cmd for _, cmd in rows if cmd is not None]
    left, right = st.columns(2)
    run_selected = left.button("Run selected", key="run_selected", disabled=running or not chosen, type="primary")
    run_all = right.button("Run all", key="run_all", disabled=running or not valid)
    if run_selected or run_all:
        _run(services, history_id, base, chosen if run_selected else valid, current_selection)


def _board_row(key: str, item: dict[str, Any], labels: list[str], rules: Rules) -> tuple[bool, dict[str, Any] | None]:
    """One command: checkbox, readable summary, its paras as inputs, the reason in red when it cannot run."""
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
                edited.append(_para_input(f"para_{key}_{j}", para, value, labels))
        candidate = {"command": name, "paras": edited}
        outcome = validate_item(candidate, labels, rules)
        ok = not isinstance(outcome, str)
        picked = st.checkbox(f"**{command_summary(candidate)}**", value=ok, disabled=not ok, key=f"pick_{key}_{ok}",
                             help=rule.description)
        if not ok:
            st.markdown(f":red[{outcome}]")
        return picked and ok, candidate if ok else None


def _para_input(key: str, para: ParaRule, value: Any, labels: list[str]) -> Any:
    label = para.name.capitalize()
    if para.type == "targets":
        current = [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
        options = list(dict.fromkeys([*labels, *current]))
        chosen = st.multiselect(label, options, default=current, key=key,
                                placeholder="whole image" if para.allow_empty else "choose parts")
        return list(chosen)
    if para.type == "enum":
        index = para.enum.index(value) if value in para.enum else 0
        return st.selectbox(label, para.enum, index=index, key=key)
    if para.type == "number":
        # No bounds on the input: an out-of-range value stays as written and the row says why it is refused.
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        return st.number_input(label, value=number, step=0.05, key=key, format="%.2f",
                               help=f"A number in {para.interval}.")
    return st.text_input(label, value="" if value is None else str(value), key=key)


def _run(services: Services, history_id: int, base: Any, commands: list[dict[str, Any]],
         current_selection: np.ndarray | None) -> None:
    preferences = get_preferences(services)
    request = EditRequest(
        image_id=base.image_id, commands=commands, history_id=history_id, parent_step_id=base.id,
        selection_key=sel.blob_key(services, current_selection), user_settings=edit_params(preferences),
    )
    try:
        job_id = submit_edit(services, request)
    except InvalidEdit as exc:
        st.error(f"These commands cannot run: {exc}")
        return
    set_last_job(services, history_id, job_id)
    _watch(job_id)
