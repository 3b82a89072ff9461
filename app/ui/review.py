"""The Review page: the edit steps awaiting a reviewer, one at a time, with what was asked and what was done.

A reviewer works through the queue from the keyboard: ``a`` approves, ``x`` rejects (Streamlit
keeps ``r`` for rerunning the page), ``j`` moves on; after a decision the next step in the list is
shown. The decisions, the thread and the pins are the same panel the Editor shows under a step
(``app.ui.step_review``).
"""

from __future__ import annotations

import streamlit as st

from app.ui.common import command_summary, get_services, preview_of, when
from app.ui.identity import require_page
from app.ui.navigation import EDITOR
from app.ui.step_review import keyed_review_panel
from jobs.gallery import list_users
from jobs.services import Services
from jobs.services.permissions import Actor
from jobs.services.reviews import OPEN_STATES, REVIEW_STATES, STATE_LABELS, ReviewItem, review_queue

#: The review panel's key prefix on this page; its ``_decided`` key says a decision was just recorded.
PREFIX = "review"
#: Session keys: the step shown, and its place in the list (where the next one is after a decision).
PICK = "review_pick"
POSITION = "review_position"
#: How many steps the list holds at once.
LIMIT = 50


def render() -> None:
    actor = require_page("review.decide", "The Review page is for reviewers and admins.")
    services = get_services()
    st.title("Review")
    items = _filtered_queue(services, actor)
    if items is None:
        return
    decided = st.session_state.pop(f"{PREFIX}_decided", None)
    _gone(st.session_state.get(PICK), [i.step.id for i in items], decided)
    if not items:
        notice = st.session_state.pop(f"{PREFIX}_notice", None)  # the panel that would show it is gone
        if notice:
            st.success(notice)
        narrowed = st.session_state.get("review_owner") is not None or set(st.session_state.get(
            "review_states", OPEN_STATES)) != OPEN_STATES
        st.info("No step matches these filters." if narrowed
                else "Nothing awaits review: every edit step you may read has been decided on.")
        return
    item = _pick(items, decided)
    _item(services, actor, item)


def _filtered_queue(services: Services, actor: Actor) -> list[ReviewItem] | None:
    left, right = st.columns([2, 1])
    states = left.multiselect("Review state", list(REVIEW_STATES),
                              default=[s for s in REVIEW_STATES if s in OPEN_STATES],
                              format_func=STATE_LABELS.__getitem__, key="review_states")
    users = {u.id: u.display_name for u in list_users(services)}
    owner = right.selectbox("Owner", [None, *users], format_func=lambda i: "Everyone" if i is None else users[i],
                            key="review_owner")
    if not states:
        st.info("Choose at least one review state to list steps.")
        return None
    return review_queue(services, actor, states=frozenset(states), owner_id=owner, limit=LIMIT)


def _pick(items: list[ReviewItem], decided: int | None) -> ReviewItem:
    """The step to show: the one picked, or after a decision on it (or when it left the list) the next one."""
    ids = [i.step.id for i in items]
    position = int(st.session_state.get(POSITION, 0))
    if decided is not None and decided in ids:  # still listed (its new state is among the filters): move past it
        position = ids.index(decided) + 1
    if decided is not None or st.session_state.get(PICK) not in ids:
        st.session_state[PICK] = ids[min(position, len(ids) - 1)]
    by_id = {i.step.id: i for i in items}
    head, nxt = st.columns([5, 1], vertical_alignment="bottom")
    head.caption(f"{len(items)} step{'s' if len(items) != 1 else ''}, newest first"
                 + (f" (the newest {LIMIT})" if len(items) >= LIMIT else "") + ". Keys: a approve · x reject · j next.")
    nxt.button("Next", key="review_next", icon=":material/skip_next:", shortcut="j", on_click=_next, args=(ids,),
               disabled=st.session_state[PICK] == ids[-1], help="The next step in the list (j).")
    st.selectbox("Step", ids, key=PICK, format_func=lambda i: _label(by_id[i]))
    st.session_state[POSITION] = ids.index(st.session_state[PICK])
    return by_id[st.session_state[PICK]]


def _gone(picked: int | None, ids: list[int], decided: int | None) -> None:
    """When what the person just did to the step shown was refused because it left the list meanwhile (someone
    made its history private or deleted it), say what was refused and why it is gone; its panel is not drawn."""
    if picked is None or picked in ids or picked == decided:
        return
    refused = [st.session_state.pop(f"{PREFIX}_{picked}_{kind}_error", None) for kind in ("decision", "comment")]
    for sentence in filter(None, refused):
        st.error(sentence)
    if any(refused):
        st.warning(f"Step {picked} is no longer in the list: its history was made private or deleted meanwhile.")


def _next(ids: list[int]) -> None:
    current = st.session_state.get(PICK)
    position = ids.index(current) + 1 if current in ids else 0
    st.session_state[PICK] = ids[min(position, len(ids) - 1)]


def _label(item: ReviewItem) -> str:
    return (f"{item.history.title or f'History {item.history.id}'} · step {item.step.id} by {item.author_name} · "
            f"{item.state.label}")


def _item(services: Services, actor: Actor, item: ReviewItem) -> None:
    history, step = item.history, item.step
    title = history.title or f"History {history.id}"
    st.subheader(title)
    shared = "shared with the team" if history.visibility == "team" else "private"
    st.caption(f"{item.owner_name}'s history ({shared}) · step {step.id} made by {item.author_name} · "
               f"{when(step.created_at)}")
    st.page_link(EDITOR, label="Open in the editor", icon=":material/open_in_new:",
                 query_params={"history": str(history.id)})
    before, after = st.columns(2)
    if item.parent_image_id is not None:
        before.image(preview_of(services, item.parent_image_id), caption="Before", width="stretch")
    if step.image_id is not None:
        after.image(preview_of(services, step.image_id), caption="After", width="stretch")
    if item.request:
        st.markdown("**Asked:**")
        st.text(item.request)
    else:
        st.caption("No chat message came before this step: it was made from the board or by hand.")
    if step.commands:
        st.markdown("**Done:**\n" + "\n".join(f"- {command_summary(c)}" for c in step.commands))
    else:
        st.caption("This step has no commands.")
    keyed_review_panel(services, actor, step.id, image_id=step.image_id, key_prefix=PREFIX,
                       shortcuts={"approve": "a", "reject": "x"})
