"""The main flow in a real browser: Debian chromium, driven by Playwright, against `chatedit serve`.

Upload a photo, ask for "make it brighter", Run all, see the result beside the base,
check it really is brighter, download it with its recipe, Set as base, reload, and find
the history in the Gallery. A screenshot of every page is taken on the way (copied to
docs/screenshots/ when CHATEDIT_SAVE_SCREENSHOTS=1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.ui.samples import still_life
from core.recipes import read_recipe
from core.settings import load_settings
from jobs.gallery import list_histories
from jobs.histories import history_steps
from jobs.images import encode_png, image_rgb
from jobs.services import Services
from tests.browser_support import browser_page, keep_screenshots, serving, shot, wait_idle

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`chatedit serve` with a small test segmenter; yields its URL and the data dir."""
    from tests.test_segmentation_support import build_colour_segmenter

    with serving(tmp_path, segmenter=str(build_colour_segmenter(tmp_path / "colours.onnx"))) as served:
        yield served


def test_upload_chat_run_set_as_base_reload_and_find_it_in_the_gallery(server: tuple[str, Path],
                                                                       tmp_path: Path) -> None:
    from playwright.sync_api import expect

    url, data_dir = server
    photo = tmp_path / "fruit-bowl.png"
    photo.write_bytes(encode_png(still_life()))
    shots = tmp_path / "screenshots"

    with browser_page(shots) as page:
        page.goto(url)
        expect(page.get_by_text("Upload a photo or pick a sample image in the sidebar")).to_be_visible()

        # 1. Upload: a new history opens, named after the file.
        page.locator('input[type="file"]').set_input_files(str(photo))
        expect(page.get_by_role("heading", name="fruit-bowl")).to_be_visible()

        # The segment job runs on the worker; the parts it found appear as chips, the overlay toggles on.
        expect(page.get_by_text("Parts found:")).to_be_visible()
        expect(page.get_by_text("Background ·").first).to_be_visible()
        page.get_by_text("Show parts").click()
        expect(page.get_by_text("Each part tinted in its own colour")).to_be_visible()

        # 2. Chat: the rule planner's command appears on the Operation Board.
        chat = page.get_by_placeholder("Say what to change")
        chat.fill("make it brighter")
        chat.press("Enter")
        expect(page.get_by_text("Brighten the whole image (+0.3)").first).to_be_visible()

        # 3. Run all: the worker runs it and the result appears beside the base.
        page.get_by_role("button", name="Run all").click()
        set_as_base = page.get_by_role("button", name="Set as base")
        expect(set_as_base).to_be_visible()
        expect(page.get_by_role("button", name="Run all")).to_be_visible()  # the page has finished its rerun
        expect(page.get_by_text("Planner: rules")).to_be_visible()
        shot(page, shots / "editor.png")

        services = Services.from_settings(load_settings(data_dir=data_dir))
        try:
            (card,) = list_histories(services)
            root, result = history_steps(services, card.id)
            assert result.parent_id == root.id and result.commands[0]["command"] == "adjust"
            assert image_rgb(services, result.image_id).mean() > image_rgb(services, root.image_id).mean() + 5
        finally:
            services.close()

        # The result downloads as a PNG with its recipe inside.
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download PNG").nth(1).click()
        recipe = read_recipe(Path(download_info.value.path()).read_bytes())
        assert recipe is not None and recipe["commands"][0]["command"] == "adjust"

        # 4. Set as base, then reload: the same history, its base and its conversation come back.
        set_as_base.click()
        expect(page.get_by_text(f"base is step {result.id}")).to_be_visible()
        page.reload()
        expect(page.get_by_role("heading", name="fruit-bowl")).to_be_visible()
        expect(page.get_by_text(f"base is step {result.id}")).to_be_visible()
        expect(page.get_by_text("make it brighter", exact=True)).to_be_visible()

        # Ctrl+Z undoes (the base goes back to the upload), Ctrl+Shift+Z redoes.
        # The shortcut is bound when its button is drawn: wait for it before pressing the keys.
        expect(page.get_by_role("button", name=re.compile(r"^Undo"))).to_be_enabled()
        wait_idle(page)
        page.get_by_role("heading", name="fruit-bowl").click()  # keys go to the page, not to an input
        page.keyboard.press("Control+z")
        expect(page.get_by_text(f"Undone: the base is step {root.id} again.")).to_be_visible()
        expect(page.get_by_role("button", name=re.compile(r"^Redo"))).to_be_enabled()
        wait_idle(page)
        page.get_by_role("heading", name="fruit-bowl").click()
        page.keyboard.press("Control+Shift+z")
        expect(page.get_by_text(f"Redone: step {result.id} is the base again.")).to_be_visible()

        # 5. The Gallery has it, with its two steps; opening it shows the tree.
        page.goto(f"{url}/gallery")
        expect(page.get_by_text("fruit-bowl", exact=True)).to_be_visible()
        expect(page.get_by_text("2 steps").first).to_be_visible()
        shot(page, shots / "gallery.png")
        page.locator(f".st-key-open_{card.id} button").click()
        expect(page.get_by_role("button", name="Re-run")).to_be_visible()
        shot(page, shots / "history.png")

        for path, markers in (("settings", ["Exact edits", "Mask optimisation (built-in: True)", "Save settings"]),
                              ("status", ["Database reachable", "idle", "Exact edits"]),
                              ("manual", ["Commands · 命令", "tonal change of the targets"])):
            page.goto(f"{url}/{path}")
            for marker in markers:  # tables fill in after the page: wait for their cells
                expect(page.get_by_text(marker).first).to_be_visible()
            name = path
            shot(page, shots / f"{name}.png")
    keep_screenshots(shots)
