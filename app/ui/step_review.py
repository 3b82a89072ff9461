"""One step's review, for any page that shows a step: its state, its thread, its pinned comments, and the decisions.

The panel is self-contained: every widget key starts with ``key_prefix`` and the step id, so the
Editor and the Review page can each show one (or several) without their keys meeting. What a
person typed stays in its box when the service refuses it, beside the sentence saying why.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import streamlit as st
from PIL import Image, ImageDraw, ImageFont

from app.ui.common import preview_of, when
from jobs.histories import StepNotFound, StepRecord, get_step
from jobs.services import Services, reviews
from jobs.services.permissions import Actor, PermissionDenied, actor_for, allowed

#: A badge's colour for each review state.
STATE_COLORS = {"awaiting": "blue", "reopened": "orange", "changes_requested": "orange", "approved": "green",
                "rejected": "red"}
STATE_ICONS = {"awaiting": ":material/hourglass_top:", "reopened": ":material/replay:",
               "changes_requested": ":material/edit_note:", "approved": ":material/check_circle:",
               "rejected": ":material/cancel:"}
#: How each decision reads as a button, in a thread, and in the sentence after it was recorded.
DECISIONS = {"approve": ("Approve", "approved", ":material/check:"),
             "request_changes": ("Request changes", "asked for changes", ":material/edit_note:"),
             "reject": ("Reject", "rejected", ":material/close:")}
#: Marker colours: the thread's pins, and the one chosen but not posted yet.
PIN_COLOR = (214, 0, 110)
PENDING_COLOR = (255, 170, 0)
#: The width the step's picture is drawn at (at most: a narrow column shows it smaller).
PICTURE_WIDTH = 640


def review_panel(services: Services, actor: Actor, step_id: int, *, image_id: int | None, key_prefix: str) -> None:
    """The review of step ``step_id`` (whose image is ``image_id``) as ``actor`` sees it and may act on it."""
    keyed_review_panel(services, actor, step_id, image_id=image_id, key_prefix=key_prefix)


def keyed_review_panel(services: Services, actor: Actor, step_id: int, *, image_id: int | None, key_prefix: str,
                       shortcuts: dict[str, str] | None = None) -> None:
    """:func:`review_panel`, with keyboard shortcuts on the decision buttons (``{"approve": "a", ...}``).

    The Review page gives them; a page where people type (the Editor's chat) does not.
    """
    key = f"{key_prefix}_{step_id}"
    try:
        entries = reviews.thread(services, actor, step_id)
    except (PermissionDenied, StepNotFound) as exc:
        st.error(str(exc))
        return
    state = reviews.step_states(services, [step_id])[step_id]
    with st.container(border=True):
        _badge(state)
        notice = st.session_state.pop(f"{key_prefix}_notice", None)
        if notice:
            st.success(notice)
        pins = [(e.pin, e.x, e.y) for e in entries if e.pin is not None and e.x is not None and e.y is not None]
        pending = st.session_state.get(f"{key}_pin")
        may_comment = allowed(actor, "review.comment")
        if image_id is not None:
            _picture(services, image_id, pins, pending, key, clickable=may_comment)
        _thread(entries)
        _decisions(services, actor, step_id, key, key_prefix, shortcuts or {})
        if may_comment:
            _comment_form(services, actor, step_id, key, next_pin=len(pins) + 1, has_image=image_id is not None)
        else:
            st.caption(f"{actor.label} ({actor.role}) may read this thread but not comment.")


def _badge(state: reviews.StepState) -> None:
    row = st.container(horizontal=True, vertical_alignment="center")
    with row:
        st.badge(state.label, color=STATE_COLORS[state.state], icon=STATE_ICONS[state.state])  # type: ignore[arg-type]
        if state.decided_by:
            st.caption(f"by {state.decided_by} · {when(state.decided_at)}")
        if state.state == "approved":
            st.badge("training example", color="violet", icon=":material/school:",
                     help="Approved steps become fine-tuning examples (the request, the parts, the commands and the "
                          "result) for the dataset studio.")


# ---------------------------------------------------------------- the picture and its pins


def marked_image(jpeg: bytes, pins: Sequence[tuple[int, float, float]],
                 pending: tuple[int, float, float] | None = None, *, width: int | None = None) -> Image.Image:
    """A copy of the picture with a filled, numbered circle at each pin (fractions of width and height).

    ``pending``: the point chosen for a comment not posted yet, drawn in another colour with its number-to-be.
    ``width``: the width it is shown at; markers are drawn at that size, so they stay crisp on a small preview.
    """
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    if width is not None and width != image.width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(image)
    radius = max(10, round(min(image.size) * 0.035))
    font = ImageFont.load_default(size=round(radius * 1.2))
    marks = [(n, x, y, PIN_COLOR) for n, x, y in pins]
    if pending is not None:
        marks.append((*pending, PENDING_COLOR))
    for number, x, y, color in marks:
        cx, cy = x * (image.width - 1), y * (image.height - 1)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=color, outline=(255, 255, 255),
                     width=max(1, radius // 6))
        draw.text((cx, cy), str(number), fill=(255, 255, 255), font=font, anchor="mm")
    return image


def _picture(services: Services, image_id: int, pins: list[tuple[int, float, float]],
             pending: tuple[float, float] | None, key: str, *, clickable: bool) -> None:
    shown = marked_image(preview_of(services, image_id), pins,
                         None if pending is None else (len(pins) + 1, *pending), width=PICTURE_WIDTH)
    if not clickable:
        st.image(shown, width="content")
        return
    from streamlit_image_coordinates import streamlit_image_coordinates

    # "content": its own width, narrower in a narrow column; a click comes back with the size it was shown at.
    clicked = streamlit_image_coordinates(shown, width="content", key=f"{key}_click", image_format="JPEG",
                                          jpeg_quality=85, cursor="crosshair")
    # The component repeats its last click on every run: only a new click moves the pin.
    if clicked is not None and clicked != st.session_state.get(f"{key}_last_click"):
        st.session_state[f"{key}_last_click"] = clicked
        width, height = clicked.get("width") or 1, clicked.get("height") or 1
        st.session_state[f"{key}_pin"] = (min(1.0, max(0.0, clicked["x"] / width)),
                                          min(1.0, max(0.0, clicked["y"] / height)))
        st.rerun()
    st.caption("Click the picture to pin your comment to a point." if not pins else
               "Numbers mark the points comments are pinned to; click the picture to pin yours.")


# ---------------------------------------------------------------- the thread


def _thread(entries: list[reviews.ThreadEntry]) -> None:
    if not entries:
        st.caption("No decision or comment yet.")
        return
    for entry in entries:
        if entry.kind == "review":
            did = DECISIONS.get(entry.decision or "", ("", entry.decision or "decided", ""))[1]
            head = f"**{entry.author_name}** {did}"
        else:
            head = f"**{entry.author_name}** commented" + (f" · pin **{entry.pin}**" if entry.pin else "")
        st.markdown(f"{head} · {when(entry.created_at)}")
        if entry.text:
            st.markdown(f"> {_quoted(entry.text)}")


def _quoted(text: str) -> str:
    """A person's words as a Markdown quote, every line of it, with Markdown's own characters kept literal."""
    escaped = "".join(f"\\{c}" if c in "\\`*_{}[]<>()#+-.!|~$" else c for c in text)
    return "\n> ".join(escaped.splitlines() or [""])


# ---------------------------------------------------------------- acting


def _decisions(services: Services, actor: Actor, step_id: int, key: str, key_prefix: str,
               shortcuts: dict[str, str]) -> None:
    if not allowed(actor, "review.decide"):
        st.caption(f"Deciding on steps is for reviewers and admins; {actor.label} is {_a(actor.role)}.")
        return
    step = _step(services, step_id)
    if step is None or step.parent_id is None:
        st.caption("This is the uploaded picture, not an edit: there is nothing to decide.")
        return
    if step.created_by == actor.id:
        st.caption("You made this step: someone else approves or rejects it.")
        return
    st.text_area("Comment with your decision (optional)", key=f"{key}_decision_text", max_chars=reviews.MAX_COMMENT,
                 height=68)
    error = st.session_state.pop(f"{key}_decision_error", None)
    if error:
        st.error(error)
    row = st.container(horizontal=True)
    for decision, (label, _did, icon) in DECISIONS.items():
        row.button(label, key=f"{key}_{decision}", icon=icon, type="primary" if decision == "approve" else "secondary",
                   shortcut=shortcuts.get(decision), on_click=_decide,
                   args=(services, actor, step_id, decision, key, key_prefix))


def _step(services: Services, step_id: int) -> StepRecord | None:
    try:
        return get_step(services, step_id)
    except StepNotFound:
        return None


def _now(services: Services, actor: Actor) -> Actor:
    """The person as they are now: a callback runs before the gate reads them again, so a role taken away
    between drawing the button and clicking it must not still count."""
    return actor_for(services, actor.id)


def _decide(services: Services, actor: Actor, step_id: int, decision: str, key: str, key_prefix: str) -> None:
    text_key = f"{key}_decision_text"
    try:
        reviews.decide(services, _now(services, actor), step_id, decision, st.session_state.get(text_key) or None)
    except (reviews.ReviewRefused, PermissionDenied) as exc:
        st.session_state[f"{key}_decision_error"] = str(exc)
        return
    st.session_state[text_key] = ""
    st.session_state[f"{key_prefix}_notice"] = f"You {DECISIONS[decision][1]} step {step_id}."
    st.session_state[f"{key_prefix}_decided"] = step_id


def _comment_form(services: Services, actor: Actor, step_id: int, key: str, *, next_pin: int,
                  has_image: bool) -> None:
    st.text_area("Comment", key=f"{key}_comment_text", max_chars=reviews.MAX_COMMENT, height=68,
                 placeholder="What should change, or what is good about it?")
    pin = st.session_state.get(f"{key}_pin")
    if pin is not None:
        note, clear = st.columns([4, 1], vertical_alignment="center")
        note.caption(f"Pinned as **{next_pin}** at {pin[0]:.0%} across, {pin[1]:.0%} down.")
        clear.button("Unpin", key=f"{key}_unpin", on_click=st.session_state.pop, args=(f"{key}_pin", None))
    elif has_image:
        st.caption("Not pinned: click the picture to pin the comment to a point.")
    error = st.session_state.pop(f"{key}_comment_error", None)
    if error:
        st.error(error)
    st.button("Comment", key=f"{key}_comment", icon=":material/chat:", on_click=_comment,
              args=(services, actor, step_id, key))


def _comment(services: Services, actor: Actor, step_id: int, key: str) -> None:
    text_key = f"{key}_comment_text"
    pin = st.session_state.get(f"{key}_pin")
    x, y = (None, None) if pin is None else pin
    try:
        reviews.comment(services, _now(services, actor), step_id, st.session_state.get(text_key) or "", x=x, y=y)
    except (reviews.ReviewRefused, PermissionDenied) as exc:
        st.session_state[f"{key}_comment_error"] = str(exc)
        return
    st.session_state[text_key] = ""
    st.session_state.pop(f"{key}_pin", None)


def _a(role: str) -> str:
    return f"{'an' if role[0] in 'aeiou' else 'a'} {role}"


__all__ = ["keyed_review_panel", "marked_image", "review_panel"]
