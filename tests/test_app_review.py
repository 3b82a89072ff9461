"""The Review page, a step's review panel and the gallery's sharing and review badges, as the team uses them.

Each test signs in as one person of the team (``CHATEDIT_AUTH=local``, a session token) and
works the real app through AppTest on the test's database.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from app.ui.identity import ACTOR_KEY
from app.ui.navigation import REVIEW
from app.ui.step_review import PENDING_COLOR, PIN_COLOR, marked_image
from core.describe import describe
from jobs.conversations import add_message
from jobs.histories import get_history, record_step, start_history
from jobs.images import store_array
from jobs.services import Services, access, reviews
from jobs.services.permissions import Actor
from tests.team_support import Team, make_team, open_app_as

BRIGHTER = [{"command": "adjust", "paras": ["brightness", 0.3, ["Whole"]]}]
WARMER = [{"command": "adjust", "paras": ["temperature", 0.2, ["Whole"]]}]


@pytest.fixture
def team(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Team:
    monkeypatch.setenv("CHATEDIT_AUTH", "local")
    return make_team(app_env)


def _history(services: Services, owner: Actor, title: str, *, visibility: str = "team") -> tuple[int, int]:
    image = store_array(services, np.full((48, 64, 3), 90, np.uint8), user_id=owner.id)
    started = start_history(services, image.id, owner_id=owner.id, title=title, visibility=visibility)
    return started.history_id, started.root_step_id


def _step(services: Services, owner: Actor, history_id: int, parent_id: int, request: str,
          commands: list[dict]) -> int:
    """A step made as the editor makes one: the person's request in the chat, then the edit's result."""
    add_message(services, history_id, "user", request, author_id=owner.id)
    image = store_array(services, np.full((48, 64, 3), 160, np.uint8), user_id=owner.id)
    return record_step(services, history_id=history_id, parent_id=parent_id, image_id=image.id, commands=commands,
                       params={"labels": ["Whole"]}, job_id=None, user_id=owner.id)


def _texts(at) -> str:  # type: ignore[no-untyped-def]
    return "\n".join([m.value for m in at.markdown] + [t.value for t in at.text] + [c.value for c in at.caption])


def test_a_reviewer_approves_the_step_and_the_next_one_is_shown(app_env: Services, team: Team) -> None:
    services = app_env
    history_id, root = _history(services, team.editor, "Harbour at dusk")
    first = _step(services, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    second = _step(services, team.editor, history_id, first, "Now a little warmer.", WARMER)

    at = open_app_as(team.token(team.reviewer), page="review")
    assert not at.exception and not at.error
    assert at.subheader[0].value == "Harbour at dusk"
    assert at.selectbox(key="review_pick").value == second  # newest first
    shown = _texts(at)
    assert "Now a little warmer." in shown and describe(WARMER[0]) in shown and "Ed's history" in shown
    assert at.button(key=f"review_{second}_approve").proto.shortcut == "a"
    assert at.button(key=f"review_{second}_reject").proto.shortcut == "x"
    assert at.button(key="review_next").proto.shortcut == "j"

    at.button(key=f"review_{second}_approve").click().run()
    assert reviews.step_states(services, [second])[second].state == "approved"
    assert f"You approved step {second}." in at.success[0].value
    assert at.selectbox(key="review_pick").value == first  # the next step awaiting review
    assert "Make it brighter, please." in _texts(at) and describe(BRIGHTER[0]) in _texts(at)

    at.button(key=f"review_{first}_approve").click().run()
    assert f"You approved step {first}." in at.success[0].value
    assert "Nothing awaits review" in at.info[0].value


def test_request_changes_with_a_comment_and_next_with_j(app_env: Services, team: Team) -> None:
    services = app_env
    history_id, root = _history(services, team.editor, "Harbour at dusk")
    first = _step(services, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    second = _step(services, team.editor, history_id, first, "Now a little warmer.", WARMER)
    at = open_app_as(team.token(team.reviewer), page="review")
    at.button(key="review_next").click().run()
    assert at.selectbox(key="review_pick").value == first

    at.text_area(key=f"review_{first}_decision_text").input("The sky is burnt out; keep the clouds.")
    at.button(key=f"review_{first}_request_changes").click().run()
    state = reviews.step_states(services, [first])[first]
    assert (state.state, state.decided_by) == ("changes_requested", "Rita")
    (entry,) = reviews.thread(services, team.editor, first)
    assert (entry.decision, entry.text) == ("request_changes", "The sky is burnt out; keep the clouds.")
    assert at.selectbox(key="review_pick").value == second  # the only step still awaiting review
    assert at.multiselect(key="review_states").value == ["awaiting", "reopened"]
    at.multiselect(key="review_states").set_value(["changes_requested"]).run()
    assert at.selectbox(key="review_pick").value == first
    assert any(m.value.startswith("**Rita** asked for changes") for m in at.markdown)
    at.selectbox(key="review_owner").set_value(team.other_editor.id).run()
    assert at.info[0].value == "No step matches these filters."


def test_a_comment_pinned_to_a_point_is_numbered_and_drawn_there(app_env: Services, team: Team) -> None:
    services = app_env
    history_id, root = _history(services, team.editor, "Harbour at dusk")
    step = _step(services, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    at = open_app_as(team.token(team.reviewer), page="review")
    at.session_state[f"review_{step}_pin"] = (0.25, 0.75)  # what a click on the picture leaves there
    at.run()
    assert "Pinned as **1** at 25% across, 75% down." in _texts(at)
    at.text_area(key=f"review_{step}_comment_text").input("This lamp is too bright.")
    at.button(key=f"review_{step}_comment").click().run()
    assert not at.error
    (entry,) = reviews.thread(services, team.editor, step)
    assert (entry.kind, entry.text, entry.pin) == ("comment", "This lamp is too bright.", 1)
    assert (entry.x, entry.y) == (0.25, 0.75)
    assert any("**Rita** commented · pin **1**" in m.value for m in at.markdown)
    assert at.text_area(key=f"review_{step}_comment_text").value == ""  # posted, so the box is empty again
    assert "Pinned as" not in _texts(at)



def test_a_refused_comment_keeps_what_was_typed_and_the_pin(app_env: Services, team: Team) -> None:
    services = app_env
    history_id, root = _history(services, team.editor, "Harbour at dusk")
    step = _step(services, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    at = open_app_as(team.token(team.reviewer), page="review")
    at.session_state[f"review_{step}_pin"] = (0.5, 0.5)
    at.run()
    at.text_area(key=f"review_{step}_comment_text").input("   ")
    at.button(key=f"review_{step}_comment").click().run()
    assert at.error[0].value == "A comment needs some words."
    assert at.text_area(key=f"review_{step}_comment_text").value == "   "
    assert "Pinned as **1**" in _texts(at)
    assert reviews.thread(services, team.editor, step) == []


def test_a_step_whose_history_went_private_meanwhile_is_refused_with_a_sentence(app_env: Services,
                                                                                team: Team) -> None:
    services = app_env
    history_id, root = _history(services, team.editor, "Harbour at dusk")
    step = _step(services, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    at = open_app_as(team.token(team.reviewer), page="review")
    at.text_area(key=f"review_{step}_decision_text").input("Lovely.")
    access.share(services, team.editor, history_id, "private")  # Ed takes it back before Rita's click lands
    at.button(key=f"review_{step}_approve").click().run()
    assert "Rita (reviewer) may not read other people's private histories" in at.error[0].value
    assert f"Step {step} is no longer in the list" in at.warning[0].value
    assert "Nothing awaits review" in at.info[0].value
    assert reviews.step_states(services, [step])[step].state == "awaiting"


def test_a_role_taken_away_counts_at_the_very_next_click(app_env: Services, team: Team) -> None:
    services = app_env
    history_id, root = _history(services, team.editor, "Harbour at dusk")
    step = _step(services, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    at = open_app_as(team.token(team.reviewer), page="review")
    team.accounts.set_role(team.admin, team.reviewer.name, "viewer")
    at.button(key=f"review_{step}_approve").click().run()
    assert reviews.step_states(services, [step])[step].state == "awaiting"  # the click came too late
    assert f"review_{step}_approve" not in {b.key for b in at.button}


@pytest.mark.parametrize("who", ["viewer", "editor"])
def test_the_review_page_refuses_people_who_may_not_decide(app_env: Services, team: Team, who: str) -> None:
    history_id, root = _history(app_env, team.editor, "Harbour at dusk")
    _step(app_env, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    actor = getattr(team, who)
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in their menu
        open_app_as(team.token(actor), page="review")
    page = AppTest.from_file(str(REVIEW), default_timeout=60)  # and refused by the page itself (a stale link)
    page.session_state[ACTOR_KEY] = actor
    page.run()
    assert page.error[0].value == (f"{actor.label} ({actor.role}) may not approve or reject steps. "
                                   "The Review page is for reviewers and admins.")
    assert not page.button and not page.subheader


def test_an_empty_queue_says_nothing_awaits_review(app_env: Services, team: Team) -> None:
    history_id, root = _history(app_env, team.editor, "Mine alone", visibility="private")
    _step(app_env, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    at = open_app_as(team.token(team.reviewer), page="review")
    assert "Nothing awaits review" in at.info[0].value


def test_the_gallery_lists_what_each_person_may_read_with_sharing_and_review_badges(app_env: Services,
                                                                                    team: Team) -> None:
    services = app_env
    private, private_root = _history(services, team.editor, "Ed's sketch", visibility="private")
    shared, shared_root = _history(services, team.editor, "Harbour at dusk", visibility="team")
    approved = _step(services, team.editor, shared, shared_root, "Make it brighter, please.", BRIGHTER)
    _step(services, team.editor, shared, approved, "Now a little warmer.", WARMER)
    reviews.decide(services, team.reviewer, approved, "approve")

    rita = open_app_as(team.token(team.reviewer), page="gallery")
    assert not rita.exception
    titles = [m.value for m in rita.markdown if m.value.startswith("**")]
    assert titles == ["**Harbour at dusk**"]
    badges = " ".join(m.value for m in rita.markdown)
    assert "Team" in badges and "1 approved" in badges and "1 awaiting review" in badges
    assert f"delete_{shared}" not in {b.key for b in rita.button}  # Rita may read it, not change it
    rita.selectbox(key="gallery_review").set_value("approved").run()
    assert [m.value for m in rita.markdown if m.value.startswith("**")] == ["**Harbour at dusk**"]
    rita.selectbox(key="gallery_review").set_value("rejected").run()
    assert "No edit history matches." in rita.info[0].value

    ed = open_app_as(team.token(team.editor), page="gallery")
    assert {m.value for m in ed.markdown if m.value.startswith("**")} == {"**Ed's sketch**", "**Harbour at dusk**"}
    ed.selectbox(key="gallery_visibility").set_value("private").run()
    assert [m.value for m in ed.markdown if m.value.startswith("**")] == ["**Ed's sketch**"]
    ed.button(key=f"share_{private}").click().run()
    assert get_history(services, private).visibility == "team"
    rita.selectbox(key="gallery_review").set_value(None).run()
    assert {m.value for m in rita.markdown if m.value.startswith("**")} == {"**Ed's sketch**", "**Harbour at dusk**"}


def test_markers_are_drawn_at_their_points_and_nowhere_else() -> None:
    """The markers alone, on a plain grey picture: each pin's filled circle at its point, the pending one too."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((200, 300, 3), 40, np.uint8)).save(buffer, format="JPEG", quality=95)
    marked = np.asarray(marked_image(buffer.getvalue(), [(1, 0.1, 0.1), (2, 0.9, 0.9)], pending=(3, 0.5, 0.5)))
    for x, y in ((0.1, 0.1), (0.9, 0.9)):
        beside_the_number = marked[round(y * 199), round(x * 299) + 6].astype(int)
        assert np.abs(beside_the_number - PIN_COLOR).max() < 40
    assert np.abs(marked[100, 156].astype(int) - PENDING_COLOR).max() < 40
    assert np.abs(marked[100, 20].astype(int) - 40).max() < 6  # the rest of the picture is untouched


def test_the_owner_sees_the_review_on_their_step_and_a_reviewer_only_reads_the_history(app_env: Services,
                                                                                      team: Team) -> None:
    services = app_env
    history_id, root = _history(services, team.editor, "Harbour at dusk")
    step = _step(services, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    reviews.decide(services, team.reviewer, step, "approve", "Just right.")
    reviews.comment(services, team.reviewer, step, "The lamp glows nicely.", x=0.4, y=0.6)

    ed = open_app_as(team.token(team.editor), page="gallery", open=str(history_id))
    assert not ed.exception and ed.title[0].value == "Harbour at dusk"
    thread = [m.value for m in ed.markdown]
    assert any(v.startswith("**Rita** approved") for v in thread)
    assert any(v.startswith("**Rita** commented · pin **1**") for v in thread)
    assert "> Just right\\." in thread and "> The lamp glows nicely\\." in thread
    assert f"gallery_review_{step}_approve" not in {b.key for b in ed.button}  # Ed made it: not his to decide
    assert "continue_open" in {b.key for b in ed.button}

    rita = open_app_as(team.token(team.reviewer), page="gallery", open=str(history_id))
    keys = {b.key for b in rita.button}
    assert {"continue_open", f"from_{step}"}.isdisjoint(keys)  # she reads it; changing it is Ed's
    assert f"gallery_review_{step}_reject" in keys

    private, _ = _history(services, team.editor, "Ed's sketch", visibility="private")
    rita = open_app_as(team.token(team.reviewer), page="gallery", open=str(private))
    assert "Rita (reviewer) may not read other people's private histories" in rita.error[0].value
    assert [m.value for m in rita.markdown if m.value.startswith("**")] == ["**Harbour at dusk**"]


def test_an_approved_step_is_marked_as_a_training_example(app_env: Services, team: Team) -> None:
    history_id, root = _history(app_env, team.editor, "Harbour at dusk")
    step = _step(app_env, team.editor, history_id, root, "Make it brighter, please.", BRIGHTER)
    at = open_app_as(team.token(team.reviewer), page="review")
    assert not any("training example" in m.value for m in at.markdown)  # awaiting: not yet
    reviews.decide(app_env, team.reviewer, step, "approve")
    at.multiselect(key="review_states").set_value(["approved"]).run()
    assert not at.exception, at.exception
    assert any("training example" in m.value for m in at.markdown)
    [example] = reviews.training_examples(app_env, team.admin)
    assert (example.step_id, example.request) == (step, "Make it brighter, please.")
