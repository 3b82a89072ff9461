"""Review of edit steps at the service door (jobs/services/reviews.py), on SQLite and PostgreSQL.

Decisions and the states derived from them, who may decide on what, comment threads with
numbered pins, the database keeping reviews append-only, and approved steps as training examples.
"""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from jobs.conversations import add_message
from jobs.histories import record_step, start_history
from jobs.images import store_array
from jobs.services import Services, reviews
from jobs.services.permissions import Actor, PermissionDenied
from tests.team_support import Team, make_team

BRIGHTER = [{"command": "adjust", "paras": ["brightness", 0.3, ["Sky"]]}]


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


def _history(services: Services, owner: Actor, *, visibility: str = "team") -> tuple[int, int]:
    """A history of ``owner`` holding only its uploaded picture: (history id, root step id)."""
    image = store_array(services, np.full((16, 24, 3), 90, np.uint8), user_id=owner.id)
    started = start_history(services, image.id, owner_id=owner.id, title="Harbour", visibility=visibility)
    return started.history_id, started.root_step_id


def _step(services: Services, owner: Actor, history_id: int, parent_id: int, *,
          commands: list | None = None, labels: list[str] | None = None) -> int:
    image = store_array(services, np.full((16, 24, 3), 150, np.uint8), user_id=owner.id)
    return record_step(services, history_id=history_id, parent_id=parent_id, image_id=image.id,
                       commands=BRIGHTER if commands is None else commands,
                       params={"labels": labels or []}, job_id=None, user_id=owner.id)


def _state(services: Services, step_id: int) -> str:
    return reviews.step_states(services, [step_id])[step_id].state


def test_the_newest_decision_sets_the_state_and_a_new_step_after_changes_requested_reopens_it(
        services: Services, team: Team) -> None:
    history_id, root = _history(services, team.editor)
    step = _step(services, team.editor, history_id, root)
    assert _state(services, step) == "awaiting"

    reviews.decide(services, team.reviewer, step, "request_changes", "The sky is too bright.")
    assert _state(services, step) == "changes_requested"
    assert [i.step.id for i in reviews.review_queue(services, team.reviewer)] == []  # nothing open: Ed's turn

    child = _step(services, team.editor, history_id, step)  # Ed answers with a new step made from it
    states = reviews.step_states(services, [step, child])
    assert (states[step].state, states[child].state) == ("reopened", "awaiting")
    assert states[step].label == "changed after review" and states[step].decided_by == "Rita"
    assert {i.step.id for i in reviews.review_queue(services, team.reviewer)} == {step, child}

    reviews.decide(services, team.reviewer, child, "approve")
    reviews.decide(services, team.admin, step, "reject", "Superseded by the next step.")
    states = reviews.step_states(services, [step, child])
    assert (states[step].state, states[child].state) == ("rejected", "approved")
    assert states[step].decided_by == "Ada" and states[child].decided_by == "Rita"
    thread = reviews.thread(services, team.editor, step)
    assert [(e.author_name, e.decision, e.text) for e in thread] == [
        ("Rita", "request_changes", "The sky is too bright."), ("Ada", "reject", "Superseded by the next step.")]
    audit = [(a.actor_id, a.action, a.object_id) for a in team.accounts.audit_entries(team.admin)[:3]]
    assert audit == [(team.admin.id, "review.reject", str(step)), (team.reviewer.id, "review.approve", str(child)),
                     (team.reviewer.id, "review.request_changes", str(step))]


def test_no_one_decides_on_their_own_step_nor_on_the_uploaded_picture(services: Services, team: Team) -> None:
    history_id, root = _history(services, team.admin)
    step = _step(services, team.admin, history_id, root)
    with pytest.raises(reviews.ReviewRefused, match="You made this step"):
        reviews.decide(services, team.admin, step, "approve")
    with pytest.raises(reviews.ReviewRefused, match="uploaded picture"):
        reviews.decide(services, team.reviewer, root, "approve")
    with pytest.raises(reviews.ReviewRefused, match="A decision is one of"):
        reviews.decide(services, team.reviewer, step, "shrug")
    with pytest.raises(PermissionDenied, match=r"Ed \(editor\) may not approve or reject steps"):
        reviews.decide(services, team.editor, step, "approve")
    assert _state(services, step) == "awaiting"
    assert reviews.thread(services, team.admin, step) == []


def test_a_reviewer_cannot_see_or_review_someone_elses_private_history(services: Services, team: Team) -> None:
    history_id, root = _history(services, team.editor, visibility="private")
    step = _step(services, team.editor, history_id, root)
    with pytest.raises(PermissionDenied, match="may not read other people's private histories"):
        reviews.decide(services, team.reviewer, step, "approve")
    with pytest.raises(PermissionDenied, match="may not read other people's private histories"):
        reviews.comment(services, team.reviewer, step, "Nice.")
    with pytest.raises(PermissionDenied):
        reviews.thread(services, team.reviewer, step)
    assert reviews.review_queue(services, team.reviewer) == []
    assert [i.step.id for i in reviews.review_queue(services, team.admin)] == [step]  # admins see everything
    assert _state(services, step) == "awaiting"


def test_comments_pinned_to_points_are_numbered_in_thread_order(services: Services, team: Team) -> None:
    history_id, root = _history(services, team.editor)
    step = _step(services, team.editor, history_id, root)
    reviews.comment(services, team.reviewer, step, "This lamp glows.", x=0.25, y=0.5)
    reviews.decide(services, team.reviewer, step, "request_changes", "See the pins.")
    reviews.comment(services, team.editor, step, "Which part?")
    reviews.comment(services, team.other_editor, step, "And this roof.", x=1.0, y=0.0)
    thread = reviews.thread(services, team.viewer, step)  # a viewer reads a team history's thread
    assert [(e.kind, e.author_name, e.text, e.pin) for e in thread] == [
        ("comment", "Rita", "This lamp glows.", 1), ("review", "Rita", "See the pins.", None),
        ("comment", "Ed", "Which part?", None), ("comment", "Eve", "And this roof.", 2)]
    assert (thread[0].x, thread[0].y, thread[3].x, thread[3].y) == (0.25, 0.5, 1.0, 0.0)


@pytest.mark.parametrize(("body", "pin", "sentence"), [
    ("   ", {}, "A comment needs some words"),
    ("Here.", {"x": 0.5}, "both x and y"),
    ("Here.", {"x": 0.5, "y": 1.5}, "each between 0 and 1"),
    ("x" * (reviews.MAX_COMMENT + 1), {}, "at most 4,000 characters"),
])
def test_a_comment_that_cannot_be_kept_is_refused_with_a_sentence(services: Services, team: Team, body: str,
                                                                   pin: dict, sentence: str) -> None:
    history_id, root = _history(services, team.editor)
    step = _step(services, team.editor, history_id, root)
    with pytest.raises(reviews.ReviewRefused, match=sentence):
        reviews.comment(services, team.reviewer, step, body, **pin)
    assert reviews.thread(services, team.reviewer, step) == []


def test_a_viewer_may_read_a_thread_but_not_comment(services: Services, team: Team) -> None:
    history_id, root = _history(services, team.editor)
    step = _step(services, team.editor, history_id, root)
    with pytest.raises(PermissionDenied, match=r"Vic \(viewer\) may not comment on steps"):
        reviews.comment(services, team.viewer, step, "Looks good.")
    reviews.comment(services, team.editor, step, "I made it.")  # an editor comments, even on their own step
    assert [e.text for e in reviews.thread(services, team.viewer, step)] == ["I made it."]


@pytest.mark.parametrize("table", ["step_reviews", "step_comments"])
@pytest.mark.parametrize("statement", ["UPDATE {table} SET created_at = created_at", "DELETE FROM {table}"])
def test_the_database_refuses_to_change_or_remove_what_was_said(services: Services, team: Team, table: str,
                                                                statement: str) -> None:
    history_id, root = _history(services, team.editor)
    step = _step(services, team.editor, history_id, root)
    reviews.decide(services, team.reviewer, step, "reject", "No.")
    reviews.comment(services, team.reviewer, step, "Really no.", x=0.1, y=0.1)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with services.database.write_session() as session:
            session.exec(sa.text(statement.format(table=table)))  # type: ignore[call-overload]
    assert [(e.text, e.decision) for e in reviews.thread(services, team.reviewer, step)] == [
        ("No.", "reject"), ("Really no.", None)]
    assert _state(services, step) == "rejected"


def test_approved_steps_are_training_examples_with_the_request_labels_and_commands(services: Services,
                                                                                   team: Team) -> None:
    history_id, root = _history(services, team.editor)
    add_message(services, history_id, "user", "Make the sky brighter, please.", author_id=team.editor.id)
    add_message(services, history_id, "assistant", "Brightening the sky.", author_id=None)
    approved = _step(services, team.editor, history_id, root, labels=["Sky", "Sea"])
    add_message(services, history_id, "user", "Now warmer.", author_id=team.editor.id)
    warmer = [{"command": "adjust", "paras": ["temperature", 0.2, []]}]
    rejected = _step(services, team.editor, history_id, approved, commands=warmer)
    waiting = _step(services, team.editor, history_id, approved, commands=warmer)
    reviews.decide(services, team.reviewer, approved, "approve")
    reviews.decide(services, team.reviewer, rejected, "reject")
    unasked, unasked_root = _history(services, team.editor)  # no chat: made from the board, asked for by no one
    reviews.decide(services, team.reviewer, _step(services, team.editor, unasked, unasked_root), "approve")

    (example,) = reviews.training_examples(services, team.admin)
    assert (example.step_id, example.history_id) == (approved, history_id)
    assert example.request == "Make the sky brighter, please."
    assert example.labels == ["Sky", "Sea"] and example.commands == BRIGHTER
    assert example.approved_by == "Rita" and example.image_id is not None
    assert reviews.request_of(services, waiting) == "Now warmer."
    with pytest.raises(PermissionDenied, match="may not manage datasets"):
        reviews.training_examples(services, team.reviewer)


def test_history_summaries_count_the_steps_in_each_state(services: Services, team: Team) -> None:
    busy, root = _history(services, team.editor)
    first = _step(services, team.editor, busy, root)
    second = _step(services, team.editor, busy, first)
    third = _step(services, team.editor, busy, first)
    _step(services, team.editor, busy, third)
    quiet, _ = _history(services, team.other_editor)
    reviews.decide(services, team.reviewer, first, "request_changes")  # its children are older than this
    reviews.decide(services, team.reviewer, second, "approve")
    reviews.decide(services, team.reviewer, third, "reject")
    summary = reviews.history_summaries(services, [busy, quiet])
    assert summary[busy] == {"changes_requested": 1, "approved": 1, "rejected": 1, "awaiting": 1}
    assert summary[quiet] == {}  # only the uploaded picture: nothing to review
    _step(services, team.editor, busy, first)  # a new step from the one with changes requested
    assert reviews.history_summaries(services, [busy])[busy] == {
        "reopened": 1, "approved": 1, "rejected": 1, "awaiting": 2}
