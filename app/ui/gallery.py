"""The Gallery page: every edit history as a card; open one to see its tree of steps, continue it, re-run a step."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone
from functools import partial

import streamlit as st

from app.ui.common import STATUS_ICONS, command_summary, get_services, png_download, preview_of, thumbnail_of, when
from app.ui.editor import deleted_notice
from app.ui.history_tree import render_tree
from app.ui.navigation import EDITOR
from core.errors import first_text_line
from jobs.edits import EditRequest, InvalidEdit, submit_edit
from jobs.errors import InvalidJobRequest, JobNotFound
from jobs.gallery import (
    HistoryCard,
    base_step_id,
    delete_history,
    list_histories,
    list_users,
    rename_history,
    restore_history,
    set_base_step,
    set_last_job,
)
from jobs.histories import HistoryNotFound, StepRecord, get_history, history_steps
from jobs.queue import JobStatus
from jobs.services import Services

COLUMNS = 3
#: Session key: histories deleted in this session, as (id, title), each offered with Undo.
DELETED = "gallery_deleted"


def render() -> None:
    services = get_services()
    raw = st.query_params.get("open")
    if raw is not None:
        try:
            history = get_history(services, int(raw))
            if history.deleted:
                deleted_notice(services, history)
                if st.button("← All histories", key="back_from_deleted"):
                    del st.query_params["open"]
                    st.rerun()
                return
            _detail(services, history.id)
            return
        except (ValueError, HistoryNotFound):
            st.error(f"There is no edit history {raw!r}.")
            del st.query_params["open"]
    _cards(services)


def _continue(history_id: int, step_id: int | None = None) -> None:
    services = get_services()
    if step_id is not None:
        set_base_step(services, history_id, step_id)
    st.session_state.pop("open_history", None)  # the editor re-opens it (and picks up a running edit)
    st.switch_page(EDITOR, query_params={"history": str(history_id)})


# ---------------------------------------------------------------- the cards


def _cards(services: Services) -> None:
    st.title("Gallery")
    _recently_deleted(services)
    users = list_users(services)
    f1, f2, f3 = st.columns([1, 1, 1])
    names = {u.id: u.display_name for u in users}
    owner = f1.selectbox("Owner", [None, *names], format_func=lambda i: "Everyone" if i is None else names[i],
                         key="gallery_owner")
    dates = f2.date_input("Edited between", value=(), key="gallery_dates", format="YYYY-MM-DD")
    failures = f3.toggle("Only histories whose last edit failed", key="gallery_failures")
    since, until = _date_bounds(dates)
    cards = list_histories(services, owner_id=owner, since=since, until=until, failures_only=failures)
    if not cards:
        st.info("No edit history matches." if (owner or dates or failures)
                else "No edit history yet: start one in the Editor.")
        return
    st.caption(f"{len(cards)} histor{'ies' if len(cards) != 1 else 'y'}, most recently edited first.")
    for start in range(0, len(cards), COLUMNS):
        for column, card in zip(st.columns(COLUMNS), cards[start:start + COLUMNS], strict=False):
            with column:
                _card(services, card)


def _date_bounds(dates: object) -> tuple[datetime | None, datetime | None]:
    """The picked local dates as aware bounds: from the first day's start to the end of the last day."""
    if not isinstance(dates, tuple | list) or not dates:
        return None, None
    local = datetime.now().astimezone().tzinfo or timezone.utc
    since = datetime.combine(dates[0], time.min, tzinfo=local)
    until = datetime.combine(dates[-1], time.min, tzinfo=local) + timedelta(days=1) if len(dates) > 1 else None
    return since, until


def _card(services: Services, card: HistoryCard) -> None:
    with st.container(border=True):
        if card.latest_image_id is not None:
            st.image(thumbnail_of(services, card.latest_image_id), width="stretch")
        st.markdown(f"**{card.title or f'History {card.id}'}**")
        status = (f"{STATUS_ICONS.get(card.last_status, '')} last edit {card.last_status}" if card.last_status
                  else "no edit run yet")
        st.caption(f"{card.owner_name} · {when(card.updated_at)} · {card.step_count} step"
                   f"{'s' if card.step_count != 1 else ''} · {status}")
        if card.last_status is JobStatus.FAILED and card.last_error:
            st.markdown(f":red[{first_text_line(card.last_error)[:160]}]")
        buttons = st.container(horizontal=True)  # as wide as their labels, wrapping on narrow cards
        if buttons.button("Open", key=f"open_{card.id}"):
            st.query_params["open"] = str(card.id)
            st.rerun()
        if buttons.button("Continue editing", key=f"continue_{card.id}"):
            _continue(card.id)
        buttons.button("Delete", key=f"delete_{card.id}", icon=":material/delete:", on_click=_delete,
                       args=(card.id, card.title), help="Hide this history from the gallery; Undo brings it back.")
        st.text_input("Rename", value=card.title, key=f"title_{card.id}", max_chars=200,
                      placeholder=f"History {card.id}", on_change=_rename, args=(card.id,),
                      help="Type a new title and press Enter.")


def _rename(history_id: int) -> None:
    rename_history(get_services(), history_id, str(st.session_state.get(f"title_{history_id}") or ""))


def _delete(history_id: int, title: str) -> None:
    delete_history(get_services(), history_id)
    st.session_state[DELETED] = [*st.session_state.get(DELETED, []), (history_id, title)]


def _recently_deleted(services: Services) -> None:
    """The histories deleted in this session, each with Undo."""
    for history_id, title in list(st.session_state.get(DELETED, [])):
        note, undo = st.columns([5, 1], vertical_alignment="center")
        note.info(f"Deleted “{title or f'History {history_id}'}”.", icon=":material/delete:")
        if undo.button("Undo", key=f"undo_delete_{history_id}", help="Restore it, as it was."):
            restore_history(services, history_id)
            st.session_state[DELETED] = [d for d in st.session_state.get(DELETED, []) if d[0] != history_id]
            st.rerun()


# ---------------------------------------------------------------- one history


def _detail(services: Services, history_id: int) -> None:
    history = get_history(services, history_id)
    steps = history_steps(services, history_id)
    base = base_step_id(services, history_id)
    if st.button("← All histories", key="back"):
        del st.query_params["open"]
        st.rerun()
    st.title(history.title or f"History {history_id}")
    st.caption(f"Started {when(history.created_at)} · last edited {when(history.updated_at)} · "
               f"{len(steps)} steps · base is step {base}")
    notice = st.session_state.pop("gallery_notice", None)
    if notice:
        (st.success if notice[0] == "ok" else st.error)(notice[1])
    if st.button("Continue editing", type="primary", key="continue_open"):
        _continue(history_id)
    by_id = {s.id: s for s in steps}
    chosen_key = f"gallery_step_{history_id}"
    chosen = st.session_state.get(chosen_key)
    if chosen not in by_id:
        chosen = steps[-1].id  # the newest step: the latest result
    st.subheader("Steps")
    render_tree(services, steps, base, key="gallery_tree", selected=chosen, on_open=partial(_choose, chosen_key))
    step = by_id[chosen]
    _step(services, history_id, step, by_id.get(step.parent_id) if step.parent_id else None, chosen == base)


def _choose(session_key: str, step_id: int) -> None:
    st.session_state[session_key] = step_id


def _step(services: Services, history_id: int, step: StepRecord, parent: StepRecord | None, is_base: bool) -> None:
    """The opened step: before and after, its commands and parameters, and what can be done from it."""
    with st.container(border=True):
        label = "original upload" if parent is None else f"from step {parent.id}"
        st.markdown(f"**Step {step.id}** · {label} · {when(step.created_at)}" + (" · **base**" if is_base else ""))
        before, after = st.columns(2)
        if parent is not None and parent.image_id is not None:
            before.image(preview_of(services, parent.image_id), caption="Before", width="stretch")
        if step.image_id is not None:
            (after if parent is not None else before).image(preview_of(services, step.image_id),
                                                            caption="After" if parent is not None else "Original",
                                                            width="stretch")
        if step.commands:
            st.markdown("\n".join(f"- {command_summary(c)}" for c in step.commands))
            with st.expander("Commands and parameters"):
                st.code(json.dumps({"commands": step.commands, **step.params}, ensure_ascii=False, indent=2),
                        language="json")
        c1, c2, c3 = st.columns(3)
        if step.image_id is not None:
            c1.download_button("Download PNG", data=png_download(services, step.image_id), mime="image/png",
                               file_name=f"chatedit-h{history_id}-step{step.id}.png", key=f"download_{step.id}")
        if c2.button("Continue from here", key=f"from_{step.id}", disabled=is_base):
            _continue(history_id, step.id)
        if step.job_id is not None and c3.button("Re-run", key=f"rerun_{step.id}",
                                                 help="Queue this step's recipe again on its parent image."):
            _rerun(services, history_id, step)


def _rerun(services: Services, history_id: int, step: StepRecord) -> None:
    """The step's edit job again, exactly as it was asked for (same commands, selection and settings)."""
    assert step.job_id is not None
    try:
        request = EditRequest.from_payload(services.queue.get(step.job_id).payload)
        job_id = submit_edit(services, request)
    except (JobNotFound, InvalidEdit) as exc:
        st.session_state["gallery_notice"] = ("error", f"This step cannot be re-run: {exc}")
    except InvalidJobRequest as exc:  # e.g. the person already has as many jobs queued as one may
        st.session_state["gallery_notice"] = ("error", f"{exc} Nothing was queued.")
    else:
        set_last_job(services, history_id, job_id)
        st.session_state["gallery_notice"] = ("ok", f"Queued again as job {job_id}; its result will be a new step "
                                                     "beside this one. Continue editing to watch it.")
    st.rerun()
