"""The headline flow in a real browser, on the embedded defaults: no setting names a segmenter or a model.

`chatedit serve` finds the default segmenter in its data dir (installed beforehand from the cached
mediapipe wheel, as `make run` would install it), the astronaut photo is uploaded, "make her jacket red
and blur the background" is typed, Run all: the result has a red suit and a blurred background.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.settings import load_settings
from jobs.gallery import list_histories
from jobs.histories import history_steps
from jobs.images import image_rgb
from jobs.services import Services
from tests import real_assets
from tests.browser_support import browser_page, keep_screenshots, serving, shot

pytestmark = pytest.mark.slow


def _a_star(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)[..., 1].astype(np.float32)


def test_the_astronaut_gets_a_red_suit_and_a_blurred_background(tmp_path: Path, default_segmenter: Path) -> None:
    from playwright.sync_api import expect

    photo = tmp_path / "astronaut.png"
    photo.write_bytes(real_assets.astronaut_png_bytes())
    installed = tmp_path / "data" / "models" / default_segmenter.name
    shutil.copytree(default_segmenter, installed)  # where `chatedit serve` installs it
    shots = tmp_path / "screenshots"
    with serving(tmp_path) as (url, data_dir), browser_page(shots) as page:
        page.goto(url)
        page.locator('input[type="file"]').set_input_files(str(photo))
        expect(page.get_by_role("heading", name="astronaut")).to_be_visible()
        expect(page.get_by_text("Parts found:")).to_be_visible()
        expect(page.get_by_text("Upper-clothes ·").first).to_be_visible()

        chat = page.get_by_placeholder("Say what to change")
        chat.fill("make her jacket red and blur the background")
        chat.press("Enter")
        page.get_by_role("button", name="Run all").click()
        expect(page.get_by_role("button", name="Set as base")).to_be_visible()
        expect(page.get_by_role("button", name="Run all")).to_be_visible()  # the page has finished its rerun
        page.get_by_text("Show parts").click()
        expect(page.get_by_text("Each part tinted in its own colour")).to_be_visible()
        shot(page, shots / "editor-astronaut.png")

        services = Services.from_settings(load_settings(data_dir=data_dir))
        try:
            (card,) = list_histories(services)
            root, result = history_steps(services, card.id)
            assert [c["command"] for c in result.commands] == ["recolor", "blur"]
            before, after = image_rgb(services, root.image_id), image_rgb(services, result.image_id)
        finally:
            services.close()
    keep_screenshots(shots)
    # The suit (the middle of the lower half) is redder; the top-left corner of the backdrop is blurrier.
    suit = (slice(380, 460), slice(60, 260))
    assert _a_star(after[suit]).mean() > _a_star(before[suit]).mean() + 8
    corner = (slice(0, 48), slice(0, 48))
    blurred = cv2.Laplacian(cv2.cvtColor(after[corner], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    sharp = cv2.Laplacian(cv2.cvtColor(before[corner], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    assert blurred < 0.5 * sharp
