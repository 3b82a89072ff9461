"""The Gallery page: every edit history the person may read, as a card; open one to see its tree of steps.

Filters: owner, visibility (private or shared with the team), review state, dates, failures. Each
card shows whether it is private or the team's and how many of its steps are in each review state.
Renaming, deleting, sharing, continuing and re-running are offered only to those who may change the
history (its owner and admins), and go through the service door (``jobs.services.access``), which
checks again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, time, timedelta, timezone
from functools import partial

import streamlit as st

from app.ui.common import STATUS_ICONS, command_summary, get_services, png_download, preview_of, thumbnail_of, when
from app.ui.editor import deleted_notice
from app.ui.history_tree import render_tree
from app.ui.identity import current_actor
from app.ui.navigation import EDITOR
from app.ui.step_review import STATE_COLORS, review_panel
from core.errors import first_text_line
from jobs.edits import EditRequest, InvalidEdit, submit_edit
from jobs.errors import InvalidJobRequest, JobNotFound
from jobs.gallery import HistoryCard, base_step_id, list_histories, list_users, set_last_job
from jobs.histories import HistoryNotFound, HistoryRecord, StaleHistory, StepRecord, history_steps
from jobs.queue import JobStatus
from jobs.services import Services, access
from jobs.services.permissions import Actor, PermissionDenied, UnknownUser, actor_for, allowed
from jobs.services.reviews import OPEN_STATES, REVIEW_STATES, STATE_LABELS, history_summaries

COLUMNS = 3
#: Session key: histories deleted in this session, as (id, title), each offered with Undo.
DELETED = "gallery_deleted"
#: Session key: a refusal from a card's action (a sentence), shown above the cards once.
REFUSED = "gallery_refused"
#: The visibility filter's choices (None: all) and how a card's badge shows each visibility.
VISIBILITY_CHOICES = {None: "All", "private": "Private", "team": "Team"}
VISIBILITY_BADGES = {"private": ("Private", ":material/lock:"), "team": ("Team", ":material/group:")}
#: The review filter's choices (None: all): each matches a history with at least one step in these states.
REVIEW_CHOICES: dict[str | None, tuple[str, frozenset[str]]] = {
    None: ("All", frozenset()),
    "open": ("awaiting review", OPEN_STATES),
    "changes_requested": ("changes requested", frozenset({"changes_requested"})),
    "approved": ("approved", frozenset({"approved"})),
    "rejected": ("rejected", frozenset({"rejected"})),
}


def render() -> None:
    services = get_services()
    actor = current_actor()
    raw = st.query_params.get("open")
    if raw is not None:
        try:
            history = access.readable_history(services, actor, int(raw))
            if history.deleted:
                deleted_notice(services, history)
                if st.button("← All histories", key="back_from_deleted"):
                    del st.query_params["open"]
                    st.rerun()
                return
            _detail(services, actor, history)
            return
        except (ValueError, HistoryNotFound):
            st.error(f"There is no edit history {raw!r}.")
            del st.query_params["open"]
        except PermissionDenied as exc:
            st.error(str(exc))
            del st.query_params["open"]
    _cards(services, actor)


def _continue(history_id: int, step_id: int | None = None, seen_version: int | None = None) -> None:
    services = get_services()
    if step_id is not None:
        try:
            access.change_base(services, current_actor(), history_id, step_id, seen_version=seen_version)
        except (PermissionDenied, StaleHistory) as exc:
            st.session_state["gallery_notice"] = ("error", str(exc))
            st.rerun()
    st.session_state.pop("open_history", None)  # the editor re-opens it (and picks up a running edit)
    st.switch_page(EDITOR, query_params={"history": str(history_id)})


# ---------------------------------------------------------------- the cards


def _cards(services: Services, actor: Actor) -> None:
    st.title("Gallery")
    refused = st.session_state.pop(REFUSED, None)
    if refused:
        st.error(refused)
    _recently_deleted(services, actor)
    users = list_users(services)
    f1, f2, f3 = st.columns([1, 1, 1])
    names = {u.id: u.display_name for u in users}
    owner = f1.selectbox("Owner", [None, *names], format_func=lambda i: "Everyone" if i is None else names[i],
                         key="gallery_owner")
    visibility = f2.selectbox("Visibility", list(VISIBILITY_CHOICES), format_func=VISIBILITY_CHOICES.__getitem__,
                              key="gallery_visibility", help="Private: its owner and admins. Team: everyone who "
                                                             "may read the team's histories.")
    review = f3.selectbox("Review", list(REVIEW_CHOICES), format_func=lambda c: REVIEW_CHOICES[c][0],
                          key="gallery_review", help="Histories with at least one step in this review state.")
    f4, f5 = st.columns([1, 2], vertical_alignment="bottom")
    dates = f4.date_input("Edited between", value=(), key="gallery_dates", format="YYYY-MM-DD")
    failures = f5.toggle("Only histories whose last edit failed", key="gallery_failures")
    since, until = _date_bounds(dates)
    cards = list_histories(services, viewer=actor, visibility=visibility, owner_id=owner, since=since, until=until,
                           failures_only=failures)
    summaries = history_summaries(services, [c.id for c in cards])
    if review is not None:
        wanted = REVIEW_CHOICES[review][1]
        cards = [c for c in cards if any(summaries[c.id][s] for s in wanted)]
    if not cards:
        st.info("No edit history matches." if (owner or visibility or review or dates or failures)
                else "No edit history yet: start one in the Editor.")
        return
    st.caption(f"{len(cards)} histor{'ies' if len(cards) != 1 else 'y'}, most recently edited first.")
    for start in range(0, len(cards), COLUMNS):
        for column, card in zip(st.columns(COLUMNS), cards[start:start + COLUMNS], strict=False):
            with column:
                _card(services, actor, card, summaries.get(card.id, Counter()))


def _date_bounds(dates: object) -> tuple[datetime | None, datetime | None]:
    """The picked local dates as aware bounds: from the first day's start to the end of the last day."""
    if not isinstance(dates, tuple | list) or not dates:
        return None, None
    local = datetime.now().astimezone().tzinfo or timezone.utc
    since = datetime.combine(dates[0], time.min, tzinfo=local)
    until = datetime.combine(dates[-1], time.min, tzinfo=local) + timedelta(days=1) if len(dates) > 1 else None
    return since, until


def _card(services: Services, actor: Actor, card: HistoryCard, summary: Counter[str]) -> None:
    writable = allowed(actor, "history.write", card)  # the card has the owner and visibility the check reads
    with st.container(border=True):
        if card.latest_image_id is not None:
            st.image(thumbnail_of(services, card.latest_image_id), width="stretch")
        st.markdown(f"**{card.title or f'History {card.id}'}**")
        _badges(card, summary)
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
        if not writable:
            return
        if buttons.button("Continue editing", key=f"continue_{card.id}"):
            _continue(card.id)
        buttons.button("Delete", key=f"delete_{card.id}", icon=":material/delete:", on_click=_delete,
                       args=(actor, card.id, card.title),
                       help="Hide this history from the gallery; Undo brings it back.")
        if card.visibility == "private":
            buttons.button("Share", key=f"share_{card.id}", icon=":material/group:", on_click=_share,
                           args=(actor, card.id, "team"), help="Let the team read it (only you and admins change it).")
        else:
            buttons.button("Make private", key=f"share_{card.id}", icon=":material/lock:", on_click=_share,
                           args=(actor, card.id, "private"), help="Only you and admins will see it.")
        st.text_input("Rename", value=card.title, key=f"title_{card.id}", max_chars=200,
                      placeholder=f"History {card.id}", on_change=_rename, args=(actor, card.id),
                      help="Type a new title and press Enter.")


def _badges(card: HistoryCard, summary: Counter[str]) -> None:
    """Private or the team's, and how many steps are in each review state (none: nothing was edited yet)."""
    label, icon = VISIBILITY_BADGES.get(card.visibility, (card.visibility, None))
    row = st.container(horizontal=True, gap="small")
    with row:
        st.badge(label, icon=icon, color="gray")
        for state in REVIEW_STATES:
            if summary[state]:
                st.badge(f"{summary[state]} {STATE_LABELS[state]}", color=STATE_COLORS[state])  # type: ignore[arg-type]


def _door(action: Callable[[], object]) -> bool:
    """Run a card's action through the service door; a refusal becomes the sentence shown above the cards."""
    try:
        action()
    except (PermissionDenied, HistoryNotFound, UnknownUser) as exc:
        st.session_state[REFUSED] = str(exc)
        return False
    return True


def _now(actor: Actor) -> Actor:
    """The person as they are now: a callback runs before the gate reads them again (a role may have changed)."""
    return actor_for(get_services(), actor.id)


def _rename(actor: Actor, history_id: int) -> None:
    title = str(st.session_state.get(f"title_{history_id}") or "")
    _door(lambda: access.rename(get_services(), _now(actor), history_id, title))


def _delete(actor: Actor, history_id: int, title: str) -> None:
    if _door(lambda: access.delete(get_services(), _now(actor), history_id)):
        st.session_state[DELETED] = [*st.session_state.get(DELETED, []), (history_id, title)]


def _share(actor: Actor, history_id: int, visibility: str) -> None:
    _door(lambda: access.share(get_services(), _now(actor), history_id, visibility))


def _recently_deleted(services: Services, actor: Actor) -> None:
    """The histories deleted in this session, each with Undo."""
    for history_id, title in list(st.session_state.get(DELETED, [])):
        note, undo = st.columns([5, 1], vertical_alignment="center")
        note.info(f"Deleted “{title or f'History {history_id}'}”.", icon=":material/delete:")
        if undo.button("Undo", key=f"undo_delete_{history_id}", help="Restore it, as it was."):
            _door(lambda h=history_id: access.restore(services, actor, h))
            st.session_state[DELETED] = [d for d in st.session_state.get(DELETED, []) if d[0] != history_id]
            st.rerun()


# ---------------------------------------------------------------- one history


def _detail(services: Services, actor: Actor, history: HistoryRecord) -> None:
    history_id = history.id
    writable = allowed(actor, "history.write", history)
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
    if writable and st.button("Continue editing", type="primary", key="continue_open"):
        _continue(history_id)
    by_id = {s.id: s for s in steps}
    chosen_key = f"gallery_step_{history_id}"
    chosen = st.session_state.get(chosen_key)
    if chosen not in by_id:
        chosen = steps[-1].id  # the newest step: the latest result
    st.subheader("Steps")
    render_tree(services, steps, base, key="gallery_tree", selected=chosen, on_open=partial(_choose, chosen_key))
    step = by_id[chosen]
    _step(services, history, step, by_id.get(step.parent_id) if step.parent_id else None, chosen == base,
          writable=writable)
    if step.parent_id is not None:
        st.subheader("Review")
        review_panel(services, actor, step.id, image_id=step.image_id, key_prefix="gallery_review")


def _choose(session_key: str, step_id: int) -> None:
    st.session_state[session_key] = step_id


def _step(services: Services, history: HistoryRecord, step: StepRecord, parent: StepRecord | None, is_base: bool,
          *, writable: bool) -> None:
    """The opened step: before and after, its commands and parameters, and what can be done from it."""
    history_id = history.id
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
        if not writable:  # continuing and re-running change the history: its owner's (and admins') to do
            return
        if c2.button("Continue from here", key=f"from_{step.id}", disabled=is_base):
            _continue(history_id, step.id, seen_version=history.version)
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
