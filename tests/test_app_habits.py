"""The habits of image tools in the Editor and the Gallery: recall, undo/redo from the keyboard, a comparison
slider, the history as a tree of thumbnails, rename and delete with undo, and live previews of running jobs."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
from PIL import Image, PngImagePlugin
from streamlit.testing.v1 import AppTest

from app.ui.editor import HISTORY_TREE, redo_target
from app.ui.history_tree import branches
from app.ui.samples import sample_png
from core.recipes import RECIPE_KEY, Recipe
from jobs.context import JobContext
from jobs.conversations import messages
from jobs.edits import EditRequest, submit_edit
from jobs.gallery import base_step_id, delete_history, list_histories, set_base_step, set_last_job
from jobs.histories import StepRecord, get_history, history_steps, record_step, start_history
from jobs.images import encode_png, image_rgb, store_upload
from jobs.services import Services
from jobs.user_settings import get_preferences, save_preferences
from tests.app_support import open_app

A1111 = ("a lighthouse at dusk, oil painting\nNegative prompt: blurry\n"
         "Steps: 24, Sampler: Euler a, CFG scale: 6, Seed: 4242, Size: 512x512, Model hash: 6ce0161689")


def _history(services: Services, name: str = "Portrait") -> tuple[int, int]:
    stored = store_upload(services, sample_png(name))
    started = start_history(services, stored.id, title=name)
    return started.history_id, started.root_step_id


def _child(services: Services, history_id: int, parent_id: int, sample: str = "Still life") -> int:
    image = store_upload(services, sample_png(sample))
    return record_step(services, history_id=history_id, parent_id=parent_id, image_id=image.id,
                       commands=[{"command": "adjust", "paras": ["brightness", 0.3, []]}], params={}, job_id=None)


def _iframes(at: AppTest) -> list[str]:
    return [e.proto.srcdoc for e in at.get("iframe")]


# ---------------------------------------------------------------- undo / redo


def test_undo_and_redo_buttons_answer_ctrl_z_and_ctrl_shift_z(app_env: Services) -> None:
    services = app_env
    history_id, root = _history(services)
    child = _child(services, history_id, root)
    set_base_step(services, history_id, child)
    at = open_app(history=str(history_id))
    assert at.button(key="undo").proto.shortcut == "ctrl+z"  # Streamlit shows it as ⌘Z on a Mac
    assert at.button(key="redo").proto.shortcut == "ctrl+shift+z"
    assert at.button(key="redo").disabled  # nothing was undone: the base is the newest step

    at.button(key="undo").click().run()
    assert base_step_id(services, history_id) == root
    assert not at.button(key="redo").disabled
    at.button(key="redo").click().run()
    assert base_step_id(services, history_id) == child
    assert any(s.value == f"Redone: step {child} is the base again." for s in at.success)
    assert at.button(key="redo").disabled and not at.button(key="undo").disabled


def test_redo_returns_to_the_undone_step_even_when_a_newer_sibling_exists(app_env: Services) -> None:
    services = app_env
    history_id, root = _history(services)
    first = _child(services, history_id, root)
    newer = _child(services, history_id, root, "Sunset landscape")
    set_base_step(services, history_id, first)
    at = open_app(history=str(history_id))
    at.button(key="undo").click().run()
    at.button(key="redo").click().run()
    assert base_step_id(services, history_id) == first
    # A new session has no undo list: Redo goes to the base's newest child.
    set_base_step(services, history_id, root)
    again = open_app(history=str(history_id))
    again.button(key="redo").click().run()
    assert base_step_id(services, history_id) == newer


def test_redo_target_rule() -> None:
    class Step:
        def __init__(self, id: int, parent_id: int | None) -> None:
            self.id, self.parent_id = id, parent_id

    steps = [Step(1, None), Step(2, 1), Step(3, 1), Step(4, 2)]
    assert redo_target(steps, 1, [2]) == 2
    assert redo_target(steps, 1, []) == 3
    assert redo_target(steps, 1, [4]) == 3  # the last undone step is not a child of this base
    assert redo_target(steps, 4, [2]) is None


# ---------------------------------------------------------------- comparison slider and history tree


def test_the_result_can_be_compared_with_a_slider_or_side_by_side(app_env: Services) -> None:
    services = app_env
    history_id, root = _history(services)
    child = _child(services, history_id, root)
    at = open_app(history=str(history_id))
    assert not _iframes(at)
    at.session_state[HISTORY_TREE] = True  # open the history tree
    at.run()
    at.button(key=f"editor_tree_step_{child}").click().run()  # open the step from the history tree
    assert at.session_state["result_step_id"] == child
    assert not _iframes(at)  # side by side by default
    at.toggle(key="compare_slider").set_value(True).run()
    (page,) = _iframes(at)
    assert page.count("data:image/") == 2 and 'role="slider"' in page and "ArrowLeft" in page
    assert "http" not in page  # self-contained: no CDN, no network
    at.toggle(key="compare_slider").set_value(False).run()
    assert not _iframes(at)
    at.button(key="set_base").click().run()
    assert base_step_id(services, history_id) == child


def test_the_editor_history_tree_marks_the_base_and_opens_steps(app_env: Services) -> None:
    services = app_env
    history_id, root = _history(services)
    a = _child(services, history_id, root)
    b = _child(services, history_id, a)
    c = _child(services, history_id, root, "Sunset landscape")  # a second try from the original: a branch
    at = open_app(history=str(history_id))
    assert not any(btn.key and btn.key.startswith("editor_tree_step_") for btn in at.button)  # closed: not drawn
    at.session_state[HISTORY_TREE] = True  # open the history tree
    at.run()
    buttons = {btn.key: btn.label for btn in at.button if btn.key and btn.key.startswith("editor_tree_step_")}
    assert buttons == {f"editor_tree_step_{root}": f"Step {root} · base", f"editor_tree_step_{a}": f"Step {a}",
                       f"editor_tree_step_{b}": f"Step {b}", f"editor_tree_step_{c}": f"Step {c}"}
    captions = [caption.value for caption in at.caption]
    assert "From the original" in captions and f"Branch from step {root}" in captions
    at.button(key=f"editor_tree_step_{b}").click().run()
    assert at.session_state["result_step_id"] == b
    at.button(key=f"editor_tree_step_{root}").click().run()  # the base itself: nothing to show beside it
    assert "result_step_id" not in at.session_state


def test_a_long_chain_of_edits_is_one_line_and_every_fork_starts_another() -> None:
    def step(id: int, parent_id: int | None) -> StepRecord:
        return StepRecord(id=id, history_id=1, parent_id=parent_id, image_id=id, commands=[], params={}, job_id=None,
                          created_by=1, created_at=datetime.now(UTC))

    chain = [step(1, None), *(step(i, i - 1) for i in range(2, 51))]
    (line,) = branches(chain)
    assert [s.id for s in line.steps] == list(range(1, 51)) and line.parent_id is None
    forked = [*chain, step(51, 10), step(52, 51), step(53, 10)]
    assert [(b.parent_id, [s.id for s in b.steps]) for b in branches(forked)] == [
        (None, list(range(1, 51))), (10, [51, 52]), (10, [53])]


# ---------------------------------------------------------------- gallery: tree, rename, delete


def test_gallery_history_is_a_tree_of_thumbnails_and_a_click_opens_a_step(app_env: Services) -> None:
    services = app_env
    history_id, root = _history(services)
    a = _child(services, history_id, root)
    at = open_app("gallery", open=str(history_id))
    assert {f"gallery_tree_step_{root}", f"gallery_tree_step_{a}"} <= {b.key for b in at.button}
    assert any(m.value.startswith(f"**Step {a}**") for m in at.markdown)  # the newest step is open
    at.button(key=f"gallery_tree_step_{root}").click().run()
    assert any(m.value.startswith(f"**Step {root}**") for m in at.markdown)
    assert not any(m.value.startswith(f"**Step {a}**") for m in at.markdown)
    assert at.button(key=f"from_{root}").disabled  # the base: already where editing continues


def test_gallery_renames_deletes_and_undoes_a_delete(app_env: Services) -> None:
    services = app_env
    history_id, _ = _history(services, "Portrait")
    at = open_app("gallery")
    at.text_input(key=f"title_{history_id}").input("Red coat portrait").run()
    assert get_history(services, history_id).title == "Red coat portrait"
    assert "**Red coat portrait**" in [m.value for m in at.markdown]

    at.button(key=f"delete_{history_id}").click().run()
    assert list_histories(services) == [] and get_history(services, history_id).deleted
    assert any("Deleted “Red coat portrait”." == i.value for i in at.info)
    at.button(key=f"undo_delete_{history_id}").click().run()
    assert [c.id for c in list_histories(services)] == [history_id]
    assert "**Red coat portrait**" in [m.value for m in at.markdown]
    assert f"undo_delete_{history_id}" not in {b.key for b in at.button}


def test_a_link_to_a_deleted_history_says_so_and_offers_undo(app_env: Services) -> None:
    services = app_env
    history_id, _ = _history(services, "Still life")
    delete_history(services, history_id)
    at = open_app(history=str(history_id))
    assert any("was deleted" in w.value for w in at.warning)
    assert "Upload a photo or pick a sample image" in at.info[0].value  # nothing of it is shown
    at.button(key=f"restore_{history_id}").click().run()
    assert not get_history(services, history_id).deleted
    assert at.title[0].value == "Still life"

    delete_history(services, history_id)
    gallery = open_app("gallery", open=str(history_id))
    assert any("was deleted" in w.value for w in gallery.warning)


# ---------------------------------------------------------------- recall


def _chatedit_png(services: Services) -> bytes:
    recipe = Recipe(commands=[{"command": "adjust", "paras": ["contrast", 0.4, []]},
                              {"command": "blur", "paras": [["Background"], 0.5]}],
                    params=[{"strength": 0.6, "cfg_scale": 8.0}], backend="diffusers", seed=777,
                    generation=[{"command": "change", "seed": 777, "scheduler": "Euler", "steps": 12}])
    return encode_png(np.full((40, 60, 3), 90, np.uint8), text={RECIPE_KEY: recipe.to_json()})


def test_dropping_a_chatedit_png_offers_recall_onto_the_open_history(app_env: Services) -> None:
    services = app_env
    history_id, _ = _history(services)
    at = open_app(history=str(history_id))
    at.sidebar.file_uploader(key="upload").set_value(("edited.png", _chatedit_png(services), "image/png")).run()
    offer = next(i.value for i in at.sidebar.info if "Recall" in i.value)
    assert offer.startswith("edited.png was made by ChatEdit. Recall puts its 2 commands")
    assert "seed = 777" in offer and "scheduler = Euler" in offer
    assert at.sidebar.button(key="recall_start").proto.type == "primary"  # a new history stays the default
    assert len(list_histories(services)) == 1  # nothing is started before the person chooses

    at.sidebar.button(key="recall_apply").click().run()
    reply = messages(services, history_id)[-1]
    assert reply.role == "assistant" and reply.content.startswith("Recalled from edited.png: 2 commands")
    assert [c["command"] for c in reply.commands or []] == ["adjust", "blur"]
    picks = [c for c in at.checkbox if c.key.startswith("pick_")]
    assert len(picks) == 2  # on the Operation Board
    assert get_preferences(services) == {"strength": 0.6, "cfg_scale": 8.0, "steps": 12, "scheduler": "Euler",
                                         "seed": 777}
    assert len(list_histories(services)) == 1


def test_a_webui_png_recalls_its_settings_and_lists_what_does_not_map(app_env: Services) -> None:
    services = app_env
    save_preferences(services, {"mask_blur": 8})
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 120, 200)).save(out, format="PNG", pnginfo=info)
    at = open_app()
    at.sidebar.file_uploader(key="upload").set_value(("lighthouse.png", out.getvalue(), "image/png")).run()
    offer = next(i.value for i in at.sidebar.info if "Recall" in i.value)
    assert "an image generator" in offer and "Not mapped (ChatEdit has no such setting): Negative prompt, Size, " \
                                              "Model hash." in offer
    at.sidebar.button(key="recall_apply").click().run()
    (card,) = list_histories(services)  # no history was open: Recall started one with the image
    assert get_preferences(services) == {"mask_blur": 8, "steps": 24, "scheduler": "Euler a", "cfg_scale": 6.0,
                                         "seed": 4242}
    reply = messages(services, card.id)[-1]
    assert reply.content.startswith("Recalled from lighthouse.png. Your settings now have scheduler = Euler a, "
                                    "steps = 24")
    assert "Not mapped: Negative prompt, Size, Model hash." in reply.content


def test_start_a_new_history_is_the_default_for_a_png_with_a_recipe(app_env: Services) -> None:
    services = app_env
    at = open_app()
    at.sidebar.file_uploader(key="upload").set_value(("edited.png", _chatedit_png(services), "image/png")).run()
    at.sidebar.button(key="recall_start").click().run()
    (card,) = list_histories(services)
    assert card.title == "edited" and messages(services, card.id) == [] and get_preferences(services) == {}
    assert image_rgb(services, history_steps(services, card.id)[0].image_id).shape == (40, 60, 3)


def test_a_plain_upload_starts_a_history_at_once(app_env: Services) -> None:
    services = app_env
    at = open_app()
    at.sidebar.file_uploader(key="upload").set_value(("fruit.png", sample_png("Still life"), "image/png")).run()
    (card,) = list_histories(services)
    assert card.title == "fruit" and at.title[0].value == "fruit"


# ---------------------------------------------------------------- live preview


def test_a_running_job_shows_its_preview_beside_the_progress_bar(app_env: Services) -> None:
    services = app_env
    history_id, root = _history(services)
    base = history_steps(services, history_id)[0]
    job_id = submit_edit(services, EditRequest(image_id=base.image_id, history_id=history_id, parent_step_id=root,
                                               commands=[{"command": "adjust", "paras": ["brightness", 0.3, []]}]))
    set_last_job(services, history_id, job_id)
    job = services.queue.claim("test-worker", ["interactive", "gpu"], lease_s=300)
    assert job is not None and job.id == job_id
    at = open_app(history=str(history_id))
    assert not any(c == "Preview" for c in _captions(at))
    JobContext(job, services, "test-worker").preview(np.full((24, 32, 3), 200, np.uint8))
    at.run()
    assert "Preview" in _captions(at)


def _captions(at: AppTest) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]
