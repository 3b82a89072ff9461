"""What each role may do from the Editor, Settings and Status pages and through every submission function,
with ``CHATEDIT_AUTH=local`` (SQLite and PostgreSQL): a viewer submits nothing by any route, an editor changes
only their own histories, and settings belong to each person."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.ui import chat
from app.ui.editor import start_face_swap, start_from_upload
from app.ui.samples import sample_png
from jobs.edits import EditRequest, submit_edit
from jobs.handlers.generate import submit_generate
from jobs.handlers.swap_face import submit_swap_face
from jobs.histories import get_step, start_history
from jobs.images import store_upload
from jobs.planning import submit_plan
from jobs.segmentation import submit_segmentation
from jobs.services import Services, access
from jobs.services.permissions import PermissionDenied
from jobs.user_settings import get_preferences, save_preferences
from tests.team_support import Team, make_team, open_app_as

BRIGHTER = [{"command": "adjust", "paras": ["brightness", 0.3, []]}]


@pytest.fixture
def team(services: Services) -> Team:
    return make_team(services)


@pytest.fixture
def app_team(app_env: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Team:
    monkeypatch.setenv("CHATEDIT_AUTH", "local")
    monkeypatch.setenv("CHATEDIT_BASE_MODEL", str(tmp_path / "sd-model"))  # so the Generate form can show
    return make_team(app_env)


def _history(services: Services, owner: int, *, shared: bool) -> tuple[int, int, int]:
    """(history id, root step id, root image id) of a history of ``owner``."""
    image = store_upload(services, sample_png("Portrait"), user_id=owner)
    started = start_history(services, image.id, owner_id=owner, title="Portrait",
                            visibility="team" if shared else "private")
    return started.history_id, started.root_step_id, image.id


def _controls(at: AppTest) -> set[str]:
    """The keys of what a person could act with: buttons, uploaders, text areas, the chat box."""
    keys = {b.key for b in at.button if b.key} | {u.key for u in at.get("file_uploader")}
    keys |= {t.key for t in at.text_area if t.key} | {c.key for c in at.chat_input if c.key}
    return keys


def test_a_viewer_opening_the_editor_sees_no_upload_chat_or_generate_controls(app_env: Services,
                                                                              app_team: Team) -> None:
    history_id, _, _ = _history(app_env, app_team.editor.id, shared=True)
    editing = {"upload", "start_sample", "generate_prompt", "chat_prompt", "run_all", "undo", "redo"}

    ed = open_app_as(app_team.token(app_team.editor), history=str(history_id))
    assert not ed.exception, ed.exception
    assert {"upload", "start_sample", "generate_prompt", "chat_prompt", "undo", "redo"} <= _controls(ed)

    for page in (open_app_as(app_team.token(app_team.viewer)),
                 open_app_as(app_team.token(app_team.viewer), history=str(history_id))):
        assert not page.exception and not page.error, (page.exception, page.error)
        assert not editing & _controls(page)
        assert not page.get("selectbox") or "sample_choice" not in {s.key for s in page.selectbox}
        assert any("Vic (viewer) may look at the team's histories" in c.value for c in page.sidebar.caption)
    assert page.title[0].value == "Portrait"  # the history itself is there to look at
    assert "Ed's history: you can look, not change it." in [c.value for c in page.caption]


@pytest.mark.parametrize("route", ["edit", "plan", "generate", "swap_face", "segment", "enqueue", "upload"])
def test_a_viewer_cannot_submit_by_any_route(services: Services, team: Team, route: str) -> None:
    vic = team.viewer.id
    image = store_upload(services, sample_png("Portrait")).id
    attempts: dict[str, Callable[[], object]] = {
        "edit": lambda: submit_edit(services, EditRequest(image_id=image, commands=BRIGHTER, user_id=vic)),
        "plan": lambda: submit_plan(services, "make it brighter", labels=[], planner="rules", user_id=vic),
        "generate": lambda: submit_generate(services, "a lighthouse", user_id=vic),
        "swap_face": lambda: submit_swap_face(services, source_image_id=image, target_image_id=image, user_id=vic),
        "segment": lambda: submit_segmentation(services, image, user_id=vic),
        "enqueue": lambda: services.queue.enqueue("edit", {"image_id": image, "commands": BRIGHTER}, owner_id=vic),
        "upload": lambda: start_from_upload(services, sample_png("Still life"), "Vic's upload", user_id=vic),
    }
    with pytest.raises(PermissionDenied, match=r"^Vic \(viewer\) may not submit jobs\.$"):
        attempts[route]()
    assert services.queue.list() == []


def test_an_editor_cannot_work_in_another_editors_history_even_when_it_is_shared(services: Services,
                                                                                team: Team) -> None:
    history_id, root, image = _history(services, team.other_editor.id, shared=True)
    ed = team.editor.id
    assert access.readable_history(services, team.editor, history_id).visibility == "team"  # Ed may look
    with pytest.raises(PermissionDenied, match=r"^Ed \(editor\) may not change other people's histories"):
        submit_edit(services, EditRequest(image_id=image, commands=BRIGHTER, history_id=history_id,
                                          parent_step_id=root, user_id=ed))
    with pytest.raises(PermissionDenied, match="may not change other people's histories"):
        submit_swap_face(services, source_image_id=image, target_image_id=image, history_id=history_id,
                         parent_step_id=root, user_id=ed)
    with pytest.raises(PermissionDenied, match="may not change other people's histories"):
        chat.ask(services, history_id, "make it brighter", [], None, user_id=ed)
    refused = start_face_swap(services, history_id, get_step(services, root), sample_png("Portrait"), user_id=ed)
    assert isinstance(refused, str) and "may not change other people's histories" in refused
    assert services.queue.list() == []
    # Eve herself may: the same edit in her own history is queued, as hers.
    job_id = submit_edit(services, EditRequest(image_id=image, commands=BRIGHTER, history_id=history_id,
                                               parent_step_id=root, user_id=team.other_editor.id))
    assert services.queue.get(job_id).owner_id == team.other_editor.id


def test_settings_belong_to_each_person_and_a_viewer_only_reads_them(app_env: Services, app_team: Team) -> None:
    ed = open_app_as(app_team.token(app_team.editor), "settings")
    assert not ed.exception, ed.exception
    ed.checkbox(key="use_steps").check()
    ed.number_input(key="pref_steps").set_value(42)
    next(b for b in ed.button if b.label == "Save settings").click().run()
    assert not ed.exception and not ed.error, (ed.exception, ed.error)
    assert get_preferences(app_env, app_team.editor.id) == {"steps": 42}

    eve = open_app_as(app_team.token(app_team.other_editor), "settings")
    assert get_preferences(app_env, app_team.other_editor.id) == {}
    assert eve.checkbox(key="use_steps").value is False and eve.number_input(key="pref_steps").value != 42
    assert not any(b.key == "reset_preferences" for b in eve.button)
    assert any(b.key == "reset_preferences" for b in open_app_as(app_team.token(app_team.editor), "settings").button)

    vic = open_app_as(app_team.token(app_team.viewer), "settings")
    assert not vic.exception, vic.exception
    assert "Vic (viewer) may read these settings but not change them" in vic.info[0].value
    assert next(b for b in vic.button if b.label == "Save settings").disabled
    with pytest.raises(PermissionDenied, match=r"^Vic \(viewer\) may not change their own settings\.$"):
        save_preferences(app_env, {"steps": 12}, app_team.viewer.id)
    assert get_preferences(app_env, app_team.viewer.id) == {}


def test_only_a_jobs_owner_or_an_admin_may_cancel_it_on_the_status_page(app_env: Services, app_team: Team) -> None:
    image = store_upload(app_env, sample_png("Portrait")).id
    job_id = submit_edit(app_env, EditRequest(image_id=image, commands=BRIGHTER, user_id=app_team.editor.id))

    eve = open_app_as(app_team.token(app_team.other_editor), "status")
    assert not eve.exception, eve.exception
    cancel = eve.button(key=f"status_cancel_{job_id}")
    assert cancel.disabled and cancel.help == "Only Ed or an admin may cancel or retry this job."

    ed = open_app_as(app_team.token(app_team.editor), "status")
    assert not ed.button(key=f"status_cancel_{job_id}").disabled
    ed.button(key=f"status_cancel_{job_id}").click().run()
    assert not ed.exception, ed.exception
    assert app_env.queue.get(job_id).status.value == "cancelled"

    ada = open_app_as(app_team.token(app_team.admin), "status")
    retry = ada.button(key=f"status_retry_{job_id}")
    assert not retry.disabled
    retry.click().run()
    assert not ada.exception, ada.exception
    (again,) = [j for j in app_env.queue.list(status="queued")]
    assert again.retry_of == job_id and again.owner_id == app_team.editor.id
