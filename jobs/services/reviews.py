"""Review of edit steps: decisions (approve, reject, request changes) and comment threads.

Reviews and comments are append-only rows; a step's review state is derived from them, never
stored: the newest decision decides, and a step whose newest decision asked for changes is
*re-opened* once a new step is made from it afterwards (the new step awaits its own review).
Approved steps are the team's training examples (request, labels, commands, result) for the
dataset studio. Every decision is also a row of the audit log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.text import clean_prompt
from db.models import REVIEW_DECISIONS, ChatMessage, History, Job, Step, StepComment, StepReview, User
from jobs.histories import HistoryRecord, StepNotFound, StepRecord, get_history, history_record, step_record, touch
from jobs.services import Services
from jobs.services.access import readable_filter, readable_step
from jobs.services.accounts import display_names, record_audit
from jobs.services.permissions import Actor, require

#: Every state a step can be in, in the order filters offer them.
REVIEW_STATES = ("awaiting", "reopened", "changes_requested", "approved", "rejected")
#: The states a reviewer still has to act on.
OPEN_STATES = frozenset({"awaiting", "reopened"})
#: How a state reads on a badge.
STATE_LABELS = {
    "awaiting": "awaiting review",
    "reopened": "changed after review",
    "changes_requested": "changes requested",
    "approved": "approved",
    "rejected": "rejected",
}
DECISION_STATES = {"approve": "approved", "reject": "rejected", "request_changes": "changes_requested"}
#: Longest comment kept: a thread is for sentences, not documents.
MAX_COMMENT = 4000


class ReviewRefused(ValueError):
    """A review or comment that cannot be recorded; the message is a sentence, the data in attributes."""

    def __init__(self, message: str, *, step_id: int) -> None:
        super().__init__(message)
        self.step_id = step_id


@dataclass(frozen=True)
class ThreadEntry:
    """One entry of a step's thread: a decision (with its optional comment) or a comment."""

    id: int
    kind: str  # "review" or "comment"
    step_id: int
    author_id: int
    author_name: str
    created_at: datetime
    text: str
    #: The decision ("approve", "reject", "request_changes") of a review; None for a comment.
    decision: str | None = None
    #: The point of the image a comment is pinned to (fractions of width and height), and its marker number.
    x: float | None = None
    y: float | None = None
    pin: int | None = None


@dataclass(frozen=True)
class StepState:
    step_id: int
    state: str
    #: Who made the newest decision and when (None while awaiting a first one).
    decided_by: str | None = None
    decided_at: datetime | None = None

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]


@dataclass(frozen=True)
class ReviewItem:
    """A step as the Review page lists it: what was asked, what was done, before and after."""

    step: StepRecord
    history: HistoryRecord
    owner_name: str
    author_name: str
    parent_image_id: int | None
    request: str | None
    state: StepState


@dataclass(frozen=True)
class TrainingExample:
    """An approved step as a fine-tuning example: the request, the labels present, the commands, the result."""

    step_id: int
    history_id: int
    request: str
    labels: list[str]
    commands: list[dict[str, Any]]
    image_id: int | None
    approved_by: str
    approved_at: datetime


def decide(services: Services, actor: Actor, step_id: int, decision: str, comment: str | None = None) -> ThreadEntry:
    """Record ``actor``'s decision on a step. Refused for the step's own author and for an upload (root) step."""
    require(actor, "review.decide")
    if decision not in REVIEW_DECISIONS:
        raise ReviewRefused(f"A decision is one of {', '.join(REVIEW_DECISIONS)}, not {decision!r}.", step_id=step_id)
    step, _history = readable_step(services, actor, step_id)
    if step.parent_id is None:
        raise ReviewRefused("The first step of a history is the uploaded picture: there is no edit to review.",
                            step_id=step_id)
    if step.created_by == actor.id:
        raise ReviewRefused("You made this step; someone else reviews it.", step_id=step_id)
    text = _comment_text(comment, step_id, required=False)
    with services.database.write_session() as session:
        row = StepReview(step_id=step_id, reviewer_id=actor.id, decision=decision, comment=text)
        session.add(row)
        _touch_history(session, step.history_id, actor, "review")
        session.flush()
        record_audit(session, actor.id, f"review.{decision}", "step", str(step_id), {"comment": bool(text)})
        return _review_entry(row, actor.label)


def comment(services: Services, actor: Actor, step_id: int, body: str, *, x: float | None = None,
            y: float | None = None) -> ThreadEntry:
    """Add a comment to a step's thread, pinned to the point (``x``, ``y``) of its image when both are given."""
    require(actor, "review.comment")
    step, _history = readable_step(services, actor, step_id)
    text = _comment_text(body, step_id, required=True)
    if (x is None) != (y is None) or (x is not None and not (0 <= x <= 1 and 0 <= y <= 1)):  # type: ignore[operator]
        raise ReviewRefused("A pin is a point of the picture: both x and y, each between 0 and 1.", step_id=step_id)
    with services.database.write_session() as session:
        row = StepComment(step_id=step_id, author_id=actor.id, body=text or "", x=x, y=y)
        session.add(row)
        _touch_history(session, step.history_id, actor, "comment")
        session.flush()
        record_audit(session, actor.id, "review.comment", "step", str(step_id), {"pinned": x is not None})
        assert row.id is not None
        return ThreadEntry(id=row.id, kind="comment", step_id=step_id, author_id=actor.id, author_name=actor.label,
                           created_at=row.created_at, text=row.body, x=x, y=y)


def thread(services: Services, actor: Actor, step_id: int) -> list[ThreadEntry]:
    """A step's decisions and comments, oldest first; pinned comments numbered 1, 2, … in that order."""
    readable_step(services, actor, step_id)
    with services.database.session() as session:
        names = display_names(session)
        reviews = session.exec(select(StepReview).where(StepReview.step_id == step_id)).all()
        comments = session.exec(select(StepComment).where(StepComment.step_id == step_id)).all()
    entries = [_review_entry(r, names.get(r.reviewer_id, "?")) for r in reviews]
    entries += [ThreadEntry(id=c.id or 0, kind="comment", step_id=step_id, author_id=c.author_id,
                            author_name=names.get(c.author_id, "?"), created_at=c.created_at, text=c.body, x=c.x, y=c.y)
                for c in comments]
    entries.sort(key=lambda e: (e.created_at, e.kind, e.id))
    numbered, pin = [], 0
    for entry in entries:
        if entry.x is not None:
            pin += 1
            entry = ThreadEntry(**{**entry.__dict__, "pin": pin})
        numbered.append(entry)
    return numbered


def step_states(services: Services, step_ids: list[int]) -> dict[int, StepState]:
    """The review state of each step (see the module's docstring); unknown ids are left out."""
    if not step_ids:
        return {}
    with services.database.session() as session:
        steps = session.exec(select(Step.id, Step.parent_id).where(col(Step.id).in_(step_ids))).all()
        return _states(session, {int(s): p for s, p in steps})


def _states(session: Session, steps: dict[int, int | None]) -> dict[int, StepState]:
    ids = list(steps)
    names = display_names(session)
    newest: dict[int, StepReview] = {}
    for review in session.exec(select(StepReview).where(col(StepReview.step_id).in_(ids))
                               .order_by(col(StepReview.created_at), col(StepReview.id))).all():
        newest[review.step_id] = review
    asked = [s for s, r in newest.items() if r.decision == "request_changes"]
    children_after: set[int] = set()
    if asked:
        for parent_id, created_at in session.exec(select(Step.parent_id, Step.created_at)
                                                  .where(col(Step.parent_id).in_(asked))).all():
            if parent_id is not None and created_at > newest[parent_id].created_at:
                children_after.add(parent_id)
    states = {}
    for step_id in ids:
        review = newest.get(step_id)
        if review is None:
            states[step_id] = StepState(step_id, "awaiting")
            continue
        state = DECISION_STATES[review.decision]
        if state == "changes_requested" and step_id in children_after:
            state = "reopened"
        states[step_id] = StepState(step_id, state, names.get(review.reviewer_id), review.created_at)
    return states


def review_queue(services: Services, actor: Actor, *, states: frozenset[str] = OPEN_STATES,
                 owner_id: int | None = None, history_id: int | None = None, limit: int = 50) -> list[ReviewItem]:
    """Edit steps ``actor`` may read in the given review states, newest first (the Review page's list)."""
    unknown = set(states) - set(REVIEW_STATES)
    if unknown:
        raise ValueError(f"Unknown review states {sorted(unknown)}; they are {', '.join(REVIEW_STATES)}.")
    query = (select(Step, History, User.name, User.display_name)
             .join(History, col(History.id) == col(Step.history_id))
             .join(User, col(User.id) == col(History.owner_id))
             .where(col(Step.parent_id).is_not(None), col(History.deleted_at).is_(None), readable_filter(actor)))
    if owner_id is not None:
        query = query.where(History.owner_id == owner_id)
    if history_id is not None:
        query = query.where(Step.history_id == history_id)
    query = query.order_by(col(Step.created_at).desc(), col(Step.id).desc())
    items: list[ReviewItem] = []
    with services.database.session() as session:
        names = display_names(session)
        offset, page = 0, max(limit * 4, 100)
        while len(items) < limit:
            rows = session.exec(query.offset(offset).limit(page)).all()
            if not rows:
                break
            offset += page
            state_of = _states(session, {r[0].id: r[0].parent_id for r in rows})
            parents = {r[0].parent_id for r in rows}
            parent_images = dict(session.exec(select(Step.id, Step.image_id).where(col(Step.id).in_(parents))).all())
            for step, history, owner, owner_display in rows:
                state = state_of[step.id]
                if state.state not in states:
                    continue
                items.append(ReviewItem(
                    step=step_record(step), history=history_record(history), owner_name=owner_display or owner,
                    author_name=names.get(step.created_by, "?"), parent_image_id=parent_images.get(step.parent_id),
                    request=_request_of(session, step), state=state))
                if len(items) >= limit:
                    break
    return items


def history_summaries(services: Services, history_ids: list[int]) -> dict[int, Counter[str]]:
    """How many edit steps of each history are in each review state (the gallery's badges and filter)."""
    if not history_ids:
        return {}
    with services.database.session() as session:
        rows = session.exec(select(Step.id, Step.parent_id, Step.history_id)
                            .where(col(Step.history_id).in_(history_ids), col(Step.parent_id).is_not(None))).all()
        states = _states(session, {int(s): p for s, p, _ in rows})
    summary: dict[int, Counter[str]] = {h: Counter() for h in history_ids}
    for step_id, _parent, history_id in rows:
        summary[history_id][states[step_id].state] += 1
    return summary


def training_examples(services: Services, actor: Actor) -> list[TrainingExample]:
    """Every approved edit step whose history still exists, as a training example (oldest approval first).

    A step with no request before it (made from the board or by hand, not asked for in the chat)
    teaches nothing about turning words into commands, so it is left out.
    """
    require(actor, "datasets.manage")
    with services.database.session() as session:
        rows = session.exec(select(Step).join(History, col(History.id) == col(Step.history_id))
                            .where(col(Step.parent_id).is_not(None), col(History.deleted_at).is_(None),
                                   col(Step.id).in_(select(StepReview.step_id)))).all()
        states = _states(session, {s.id: s.parent_id for s in rows})
        examples = []
        for step in rows:
            state = states[step.id]
            request = _request_of(session, step)
            if state.state != "approved" or not request:
                continue
            examples.append(TrainingExample(
                step_id=step.id, history_id=step.history_id, request=request,
                labels=list((step.params or {}).get("labels") or []), commands=list(step.commands or []),
                image_id=step.image_id, approved_by=state.decided_by or "?", approved_at=state.decided_at))  # type: ignore[arg-type]
    examples.sort(key=lambda e: (e.approved_at, e.step_id))
    return examples


def request_of(services: Services, step_id: int) -> str | None:
    """The person's words the step answered: their newest chat message before its edit was asked."""
    with services.database.session() as session:
        step = session.get(Step, step_id)
        if step is None:
            raise StepNotFound(step_id)
        return _request_of(session, step)


def _request_of(session: Session, step: Step) -> str | None:
    asked_at = step.created_at
    if step.job_id is not None:
        job_created = session.exec(select(Job.created_at).where(Job.id == step.job_id)).first()
        asked_at = job_created or asked_at
    return session.exec(select(ChatMessage.content)
                        .where(ChatMessage.history_id == step.history_id, ChatMessage.role == "user",
                               col(ChatMessage.created_at) <= asked_at)
                        .order_by(col(ChatMessage.created_at).desc(), col(ChatMessage.id).desc())).first()


def _touch_history(session: Session, history_id: int, actor: Actor, change: str) -> None:
    """A review or a comment is news for whoever has the history open: its version moves, their page refreshes."""
    history = session.get(History, history_id)
    if history is not None:
        touch(history, by=actor.id, change=change)
        session.add(history)


def _comment_text(text: str | None, step_id: int, *, required: bool) -> str | None:
    cleaned = clean_prompt(text or "").strip()
    if not cleaned:
        if required:
            raise ReviewRefused("A comment needs some words.", step_id=step_id)
        return None
    if len(cleaned) > MAX_COMMENT:
        raise ReviewRefused(f"A comment is at most {MAX_COMMENT:,} characters; this one has {len(cleaned):,}.",
                            step_id=step_id)
    return cleaned



def _review_entry(row: StepReview, name: str) -> ThreadEntry:
    assert row.id is not None
    return ThreadEntry(id=row.id, kind="review", step_id=row.step_id, author_id=row.reviewer_id, author_name=name,
                       created_at=row.created_at, text=row.comment or "", decision=row.decision)


__all__ = ["OPEN_STATES", "REVIEW_STATES", "STATE_LABELS", "ReviewItem", "ReviewRefused", "StepState", "ThreadEntry",
           "TrainingExample", "comment", "decide", "get_history", "history_summaries", "request_of", "review_queue",
           "step_states", "thread", "training_examples"]
