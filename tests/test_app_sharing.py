"""Private and shared histories in the Editor, the optimistic base check and following another person's change,
as people signed in with ``CHATEDIT_AUTH=local`` see them (AppTest, SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app.ui.samples import sample_png
from jobs.conversations import add_message
from jobs.gallery import base_step_id
from jobs.histories import get_history, history_version, record_step, start_history
from jobs.images import store_upload
from jobs.services import Services, access, reviews
from tests.team_support import Team, make_team, open_app_as

TITLE = "Ed's portrait"


@pytest.fixture
def team(app_env: Services, monkeypatch: pytest.MonkeyPatch) -> Team:
    monkeypatch.setenv("CHATEDIT_AUTH", "local")
    return make_team(app_env)


def _ed_history(services: Services, team: Team) -> tuple[int, int, int, int]:
    """Ed's private history: a root and two edits of it, (history, root, first edit, second edit)."""
    ed = team.editor.id
    started = start_history(services, store_upload(services, sample_png("Portrait"), user_id=ed).id, owner_id=ed,
                            title=TITLE)
    children = []
    for sample, amount in (("Still life", 0.3), ("Sunset landscape", -0.2)):
        image = store_upload(services, sample_png(sample), user_id=ed)
        children.append(record_step(services, history_id=started.history_id, parent_id=started.root_step_id,
                                    image_id=image.id, commands=[{"command": "adjust",
                                                                  "paras": ["brightness", amount, []]}],
                                    params={}, job_id=None, user_id=ed))
    return started.history_id, started.root_step_id, children[0], children[1]


def _images(at: AppTest) -> int:
    return len(at.get("image"))


def _captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def _keys(at: AppTest) -> set[str]:
    return {b.key for b in at.button if b.key} | {t.key for t in at.toggle if t.key}


def test_a_private_history_is_refused_to_another_editor_and_shown_to_an_admin(app_env: Services, team: Team) -> None:
    history_id, _, _, _ = _ed_history(app_env, team)
    add_message(app_env, history_id, "user", "make the coat red", author_id=team.editor.id)

    eve = open_app_as(team.token(team.other_editor), history=str(history_id))
    assert not eve.exception, eve.exception
    assert [e.value for e in eve.error] == [
        f"Eve (editor) may not read other people's private histories (history {history_id}, "
        f"owned by user {team.editor.id})."]
    assert _images(eve) == 0 and TITLE not in [t.value for t in eve.title]
    assert not eve.get("chat_message") and "make the coat red" not in " ".join(m.value for m in eve.markdown)

    ada = open_app_as(team.token(team.admin), history=str(history_id))
    assert not ada.exception and not ada.error, (ada.exception, ada.error)
    assert ada.title[0].value == TITLE and _images(ada) >= 1
    assert "make the coat red" in " ".join(m.value for m in ada.markdown)
    assert "Private: only its owner and admins see it." in _captions(ada)
    assert "Ed's history; you may change it as an admin" in _captions(ada)


def test_once_shared_another_editor_and_a_viewer_see_it_read_only(app_env: Services, team: Team) -> None:
    history_id, root, first, _ = _ed_history(app_env, team)
    add_message(app_env, history_id, "user", "make the coat red", author_id=team.editor.id)
    ed = open_app_as(team.token(team.editor), history=str(history_id))
    assert ed.toggle(key=f"share_{history_id}_private").value is False
    ed.toggle(key=f"share_{history_id}_private").set_value(True).run()  # Ed shares it with the team
    assert not ed.exception, ed.exception
    assert get_history(app_env, history_id).visibility == "team"
    assert ed.toggle(key=f"share_{history_id}_team").value is True
    assert "Shared with the team" in _captions(ed)

    for reader in (team.other_editor, team.viewer):
        at = open_app_as(team.token(reader), history=str(history_id))
        assert not at.exception and not at.error, (at.exception, at.error)
        assert at.title[0].value == TITLE and _images(at) >= 1
        assert "Ed's history: you can look, not change it." in _captions(at)
        assert "make the coat red" in " ".join(m.value for m in at.markdown)  # the chat transcript
        at.session_state["result_step_id"] = first  # a step opened from the tree, shown beside the base
        at.run()
        assert not at.exception, at.exception
        assert _images(at) >= 2
        keys = _keys(at)
        assert not at.chat_input
        uploaders = {u.key for u in at.get("file_uploader")}
        assert uploaders == ({"upload"} if reader is team.other_editor else set())  # Eve may start her own history
        assert not {"set_base", "undo", "redo", "run_all", "run_selected"} & keys
        assert not any(k.startswith("share_") for k in keys)
        assert "Selection tools (brush, eraser, click to select)" not in [e.label for e in at.expander]
    assert base_step_id(app_env, history_id) == root


def test_a_stale_set_as_base_is_refused_with_who_changed_it_and_changes_nothing(app_env: Services,
                                                                                 team: Team) -> None:
    history_id, root, first, second = _ed_history(app_env, team)
    ed = open_app_as(team.token(team.editor), history=str(history_id))
    ed.session_state["result_step_id"] = first  # Ed looks at the first edit, ready to make it the base
    ed.run()
    assert ed.button(key="set_base")

    access.change_base(app_env, team.admin, history_id, second, seen_version=None)  # meanwhile, Ada
    ed.button(key="set_base").click().run()
    assert not ed.exception, ed.exception
    (refusal,) = [e.value for e in ed.error]
    assert refusal.startswith("This history changed after you looked at it: Ada chose another base step at ")
    assert refusal.endswith("Nothing was changed; look at it again and choose again.")
    assert base_step_id(app_env, history_id) == second

    ed.button(key="set_base").click().run()  # having seen Ada's change, Ed chooses again
    assert not ed.exception and not ed.error, (ed.exception, ed.error)
    assert base_step_id(app_env, history_id) == first
    assert history_version(app_env, history_id).changed_by_name == "Ed"


def test_a_stale_undo_is_refused_too(app_env: Services, team: Team) -> None:
    history_id, root, first, second = _ed_history(app_env, team)
    access.change_base(app_env, team.editor, history_id, first, seen_version=None)
    ed = open_app_as(team.token(team.editor), history=str(history_id))
    access.change_base(app_env, team.admin, history_id, second, seen_version=None)
    ed.button(key="undo").click().run()
    assert [e.value for e in ed.error][0].startswith("This history changed after you looked at it: Ada ")
    assert base_step_id(app_env, history_id) == second


def test_the_editor_shows_another_persons_change_on_its_next_run(app_env: Services, team: Team) -> None:
    history_id, root, first, _ = _ed_history(app_env, team)
    access.share(app_env, team.editor, history_id, "team")
    vic = open_app_as(team.token(team.viewer), history=str(history_id))
    assert f"3 steps · base is step {root}." in _captions(vic)

    access.change_base(app_env, team.editor, history_id, first, seen_version=None)  # Ed acts elsewhere
    newest = record_step(app_env, history_id=history_id, parent_id=first,
                         image_id=store_upload(app_env, sample_png("Portrait"), user_id=team.editor.id).id,
                         commands=[{"command": "adjust", "paras": ["contrast", 0.2, []]}], params={}, job_id=None,
                         user_id=team.editor.id)
    vic.run()  # what the polling fragment triggers when the history's version moved
    assert not vic.exception, vic.exception
    assert f"4 steps · base is step {first}." in _captions(vic)
    vic.session_state["history_tree_open"] = True
    vic.run()
    assert f"editor_tree_step_{newest}" in _keys(vic)


def test_a_reviewer_approves_the_step_on_show_from_the_editors_review_panel(app_env: Services, team: Team) -> None:
    history_id, _, first, _ = _ed_history(app_env, team)
    access.share(app_env, team.editor, history_id, "team")
    rita = open_app_as(team.token(team.reviewer), history=str(history_id))
    assert "Review and comments" in [e.label for e in rita.expander]
    assert not any(b.key == f"editor_review_{first}_approve" for b in rita.button)  # closed: not drawn
    rita.session_state["result_step_id"] = first
    rita.session_state["review_open"] = True
    rita.run()
    assert not rita.exception, rita.exception
    rita.button(key=f"editor_review_{first}_approve").click().run()
    assert not rita.exception, rita.exception
    assert reviews.step_states(app_env, [first])[first].state == "approved"
    assert "set_base" not in _keys(rita)  # a reviewer decides; changing the history stays Ed's
