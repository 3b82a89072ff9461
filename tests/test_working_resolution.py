"""Large photos: the page works on a working copy and never sends the browser a full-size image, while the
worker edits the full image with masks scaled up from the working copy (soft edges at full size)."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from app.ui import selection as sel
from app.ui.common import png_download
from core.classical import feather_for
from core.commands import Command
from core.editing import Regions, generative_mask, run_classical
from core.masks import InvalidMask, build_mask, resize_labels, resize_mask, same_aspect
from core.recipes import read_recipe
from core.settings import Settings
from db.models import Image as ImageRow
from jobs.edits import EditRequest, submit_edit
from jobs.histories import history_steps, start_history
from jobs.images import (
    THUMBNAIL_MAX_SIDE,
    WORKING_MAX_SIDE,
    encode_png,
    image_preview,
    image_rgb,
    image_thumbnail,
    store_array,
    store_upload,
    working_rgb,
)
from jobs.queue import JobStatus
from jobs.segmentation import find_segmentation
from jobs.services import Services
from tests.app_support import open_app
from tests.conftest import running_worker
from tests.test_segmentation_support import COLOURS, ID, build_colour_segmenter

WIDE, TALL = 3000, 2000  # a photo well over the working size
WORKING = (853, 1280)  # its working copy, H × W


# ---------------------------------------------------------------- pictures


def _ellipse_labels(height: int, width: int) -> np.ndarray:
    """Background with an Upper-clothes ellipse in the middle and a Hair band across the top."""
    y, x = np.mgrid[0:height, 0:width]
    labels = np.zeros((height, width), np.uint8)
    inside = ((x - width / 2) / (width * 0.25)) ** 2 + ((y - height * 0.55) / (height * 0.3)) ** 2 <= 1.0
    labels[inside] = ID["Upper-clothes"]
    labels[: height // 8, width // 3: 2 * width // 3] = ID["Hair"]
    return labels


def _painted(labels: np.ndarray, grain: int = 6) -> np.ndarray:
    """Each label's colour, with a little grain unless ``grain`` is 0 (the colour segmenter still finds every part)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(-grain, grain + 1, size=(*labels.shape, 3), dtype=np.int16)
    return np.clip(COLOURS[labels].astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.abs(after.astype(np.int16) - before.astype(np.int16)).max(axis=-1) > 0


def _grown(mask: np.ndarray, px: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def _shrunk(mask: np.ndarray, px: int) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def _blend_widths(before: np.ndarray, after: np.ndarray, row: int) -> list[int]:
    """Along one row of a flat-coloured picture, the lengths of the runs of pixels changed part of the way."""
    change = np.abs(after[row].astype(np.float32) - before[row].astype(np.float32)).sum(axis=-1)
    share = change / change.max()
    partial = (share > 0.05) & (share < 0.95)
    runs, current = [], 0
    for value in partial:
        if value:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs + ([current] if current else [])


# ---------------------------------------------------------------- scaling masks and label maps


def test_a_label_map_scales_by_its_nearest_label_and_keeps_only_real_ids() -> None:
    small = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    big = resize_labels(small, (4, 6))
    np.testing.assert_array_equal(big, np.repeat(np.repeat(small, 2, axis=0), 2, axis=1))
    labels = _ellipse_labels(*WORKING)
    full = resize_labels(labels, (TALL, WIDE))
    assert full.shape == (TALL, WIDE) and full.dtype == labels.dtype
    assert set(np.unique(full)) == set(np.unique(labels))
    # Centre-aligned: the same as the index arithmetic for any dtype.
    wide_ids = resize_labels(labels.astype(np.int64), (TALL, WIDE))
    np.testing.assert_array_equal(wide_ids, full)
    shares = [(full == i).mean() - (labels == i).mean() for i in np.unique(labels)]
    assert max(abs(s) for s in shares) < 0.002


def test_a_mask_scaled_up_has_smooth_edges_not_steps() -> None:
    y, x = np.mgrid[0:100, 0:100]
    diagonal = x > y
    big = resize_mask(diagonal, (400, 400))
    yy, xx = np.mgrid[0:400, 0:400]
    # A staircase would miss the true diagonal by up to a whole source pixel (4 px here); a smooth edge stays near it.
    assert (big != (xx > yy)).mean() < 0.004
    assert resize_mask(big, (100, 100)).dtype == bool


def test_only_a_scale_of_the_same_picture_is_scaled() -> None:
    assert same_aspect((WORKING[0], WORKING[1]), (TALL, WIDE))
    assert same_aspect((960, 1280), (3000, 4000)) and same_aspect((3000, 4000), (960, 1280))
    assert not same_aspect((960, 1280), (2000, 3000))
    labels = np.zeros((960, 1280), np.uint8)
    with pytest.raises(InvalidMask, match="the label map is 1280×960 but the image is 3000×2000"):
        build_mask(["Hair"], label_map=labels, label_names=["Background", "Hair"], shape=(2000, 3000),
                   scale_sources=True)
    with pytest.raises(InvalidMask):  # without scale_sources, sizes must match exactly
        build_mask(["Hair"], label_map=labels, label_names=["Background", "Hair"], shape=(3000, 4000))


# ---------------------------------------------------------------- working copy, preview, thumbnail


def _blob_files(services: Services) -> int:
    """How many blobs the (file system) blob store holds."""
    root = services.blobs.root  # type: ignore[attr-defined]
    return sum(1 for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "tmp")


def test_working_copy_preview_and_thumbnail_of_a_large_image(services: Services) -> None:
    stored = store_array(services, _painted(_ellipse_labels(TALL, WIDE)))
    working = working_rgb(services, stored.id)
    assert working.shape == (*WORKING, 3) and working.dtype == np.uint8 and not working.flags.writeable
    assert working_rgb(services, stored.id) is working  # kept in this process

    blobs = _blob_files(services)
    preview, thumbnail = image_preview(services, stored.id), image_thumbnail(services, stored.id)
    with Image.open(io.BytesIO(preview)) as shown:
        assert shown.format == "JPEG" and shown.size == (WORKING[1], WORKING[0])
    with Image.open(io.BytesIO(thumbnail)) as card:
        assert card.format == "JPEG" and max(card.size) == THUMBNAIL_MAX_SIDE and card.size == (384, 256)
    assert _blob_files(services) == blobs + 2
    with services.database.session() as session:
        row = session.get(ImageRow, stored.id)
        assert row is not None and row.preview_key and row.thumbnail_key
    # Made once: asking again reads the same blobs and stores nothing.
    assert image_preview(services, stored.id) == preview and image_thumbnail(services, stored.id) == thumbnail
    assert _blob_files(services) == blobs + 2


def test_a_small_image_is_its_own_working_copy(services: Services) -> None:
    rgb = _painted(_ellipse_labels(90, 120))
    stored = store_array(services, rgb)
    np.testing.assert_array_equal(working_rgb(services, stored.id), rgb)
    with Image.open(io.BytesIO(image_preview(services, stored.id))) as shown:
        assert shown.size == (120, 90)


# ---------------------------------------------------------------- the edit job at full size


@pytest.fixture
def segmenter(tmp_path: Path) -> Path:
    return build_colour_segmenter(tmp_path / "colours.onnx")


@pytest.fixture
def seg_services(settings: Settings, segmenter: Path) -> Iterator[Services]:
    from db.migrate import upgrade

    svc = Services.from_settings(settings.model_copy(update={"segmenter": segmenter}))
    upgrade(svc.database)
    yield svc
    svc.close()


def _edit(services: Services, request: EditRequest) -> Any:
    job_id = submit_edit(services, request)
    with running_worker(services, lanes=["interactive", "gpu"]):
        job = services.queue.wait(job_id, timeout_s=300)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    return job


def test_a_part_recoloured_on_a_large_photo_changes_that_part_at_full_size(seg_services: Services) -> None:
    services = seg_services
    base = _painted(_ellipse_labels(TALL, WIDE), grain=0)
    stored = store_upload(services, encode_png(base))
    job = _edit(services, EditRequest(image_id=stored.id,
                                      commands=[{"command": "recolor", "paras": [["Upper-clothes"], "blue"]}]))
    edited = image_rgb(services, job.result["image_id"])
    assert edited.shape == base.shape  # the full image, not the working copy

    segmentation = find_segmentation(services, stored.id, "colours@000000000001")
    assert segmentation is not None and segmentation.label_map.shape == WORKING  # segmented on the working copy
    part = resize_labels(segmentation.label_map, (TALL, WIDE)) == ID["Upper-clothes"]
    feather = feather_for(base.shape)
    inside, far = _shrunk(part, feather + 3), ~_grown(part, feather + 4)
    assert _changed(base, edited)[inside].mean() > 0.99
    np.testing.assert_array_equal(edited[far], base[far])  # everything away from the part is untouched
    shirt = edited[inside].reshape(-1, 3).mean(axis=0)
    assert shirt[2] > shirt[0] + 40  # it is blue now
    # The edge is soft at full size: a blend many pixels wide where the ellipse meets the background.
    widths = _blend_widths(base, edited, round(TALL * 0.55))
    assert len(widths) == 2 and min(widths) >= feather // 2
    # Previews of the result were made by the worker from the pixels it had.
    with services.database.session() as session:
        row = session.get(ImageRow, job.result["image_id"])
        assert row is not None and row.preview_key and row.thumbnail_key


def test_soft_edges_scale_with_the_image() -> None:
    labels = _ellipse_labels(*WORKING)
    command = Command("recolor", (("Upper-clothes",), "blue"))
    names = [*ID]
    widths = {}
    for size in ((TALL, WIDE), (600, 900)):
        image = _painted(resize_labels(labels, size), grain=0)
        regions = Regions(shape=size, label_map=labels, label_names=names)
        edited = run_classical(image, command, regions, {}).image
        widths[size] = np.median(_blend_widths(image, edited, round(size[0] * 0.55)))
    assert widths[(TALL, WIDE)] > 2 * widths[(600, 900)] > 2  # the photo is 3.3 times as wide


def test_a_selection_drawn_on_the_working_copy_edits_the_same_region_of_the_full_image(services: Services) -> None:
    base = _painted(np.full((TALL, WIDE), ID["Pants"], np.uint8))
    stored = store_array(services, base)
    drawn = np.zeros(WORKING, bool)  # what the page keeps: a selection on the working copy
    drawn[200:500, 300:700] = True
    job = _edit(services, EditRequest(image_id=stored.id, selection_key=services.blobs.put(sel.to_png(drawn)),
                                      commands=[{"command": "adjust", "paras": ["brightness", 0.5, ["Selection"]]}]))
    edited = image_rgb(services, job.result["image_id"])
    region = resize_mask(drawn, (TALL, WIDE))
    feather = feather_for(base.shape)
    assert _changed(base, edited)[_shrunk(region, feather + 2)].all()
    far = ~_grown(region, feather + 3)
    np.testing.assert_array_equal(edited[far], base[far])
    ys, xs = np.nonzero(_changed(base, edited))
    scale = WIDE / WORKING[1]
    assert abs(ys.min() - 200 * scale) <= feather + 3 and abs(xs.max() - 700 * scale) <= feather + 3


def test_the_generative_mask_is_optimised_on_the_label_map_and_scaled_to_the_image() -> None:
    labels = _ellipse_labels(*WORKING)
    regions = Regions(shape=(TALL, WIDE), label_map=labels, label_names=[*ID])
    mask = generative_mask(Command("change", (("Upper-clothes",), "a red coat")), regions)
    assert mask is not None and mask.shape == (TALL, WIDE)
    part = resize_labels(labels, (TALL, WIDE)) == ID["Upper-clothes"]
    assert (mask & part).sum() / part.sum() > 0.95


# ---------------------------------------------------------------- what the page sends


_DATA_URL = re.compile(rb"data:image/[a-z]+;base64,([A-Za-z0-9+/=]+)")


class SentImages:
    """The size of every picture the page hands Streamlit: st.image's input and data URLs inside elements."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def record(self, image: Any) -> None:
        if isinstance(image, bytes | bytearray):
            with Image.open(io.BytesIO(image)) as picture:
                self.sizes.append(picture.size)
        elif isinstance(image, np.ndarray):
            self.sizes.append((image.shape[1], image.shape[0]))
        elif isinstance(image, Image.Image):
            self.sizes.append(image.size)
        elif isinstance(image, list | tuple):
            for item in image:
                self.record(item)

    def scan(self, at: AppTest) -> None:
        """Pictures inlined in element protos (the comparison slider, the click and brush components)."""
        for node in _nodes(at._tree):
            proto = getattr(node, "proto", None)
            if proto is None or not hasattr(proto, "SerializeToString"):
                continue
            for match in _DATA_URL.finditer(proto.SerializeToString()):
                self.record(base64.b64decode(match.group(1)))

    def longest(self) -> int:
        assert self.sizes, "the page showed no picture at all"
        return max(max(size) for size in self.sizes)

    def clear(self) -> None:
        self.sizes.clear()


def _nodes(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> SentImages:
    from streamlit.elements.lib import image_utils

    seen = SentImages()
    to_url = image_utils.image_to_url

    def recording_to_url(image: Any, *args: Any, **kwargs: Any) -> str:
        seen.record(image)
        return to_url(image, *args, **kwargs)

    monkeypatch.setattr(image_utils, "image_to_url", recording_to_url)
    return seen


def test_the_editor_and_gallery_never_send_a_full_size_image(app_env: Services, sent: SentImages) -> None:
    services = app_env
    photo = _painted(_ellipse_labels(TALL, WIDE))
    stored = store_upload(services, encode_png(photo))
    history_id = start_history(services, stored.id, title="Large").history_id
    blobs = _blob_files(services)
    at = open_app(history=str(history_id))
    sent.scan(at)
    assert len(sent.sizes) >= 2 and sent.longest() <= WORKING_MAX_SIDE  # the base's preview and the brush canvas
    assert _blob_files(services) == blobs + 2  # the preview and the thumbnail, made on first use
    at.run()
    assert _blob_files(services) == blobs + 2  # and reused

    # The tools work on the working copy: a click there selects at that size.
    at.radio(key="mask_tool").set_value("Click to select").run()
    at.radio(key="click_method").set_value("Similar colour").run()
    sent.clear()
    at.session_state[sel.CLICK] = (20, 20)  # the background
    at.run()
    assert not at.exception, at.exception
    assert at.session_state[sel.SELECTION].shape == WORKING
    sent.scan(at)
    assert sent.longest() <= WORKING_MAX_SIDE

    # An edit's result is shown as a preview; its download is the full-size PNG with the recipe.
    at.chat_input(key="chat_prompt").set_value("make it brighter").run()
    with running_worker(services, lanes=["interactive", "gpu"]):
        at.button(key="run_all").click().run()
        services.queue.wait(at.session_state["job_id"], timeout_s=300)
        for _ in range(40):
            at.run()
            if "job_id" not in at.session_state:
                break
    assert not at.exception, at.exception
    result = history_steps(services, history_id)[-1]
    assert result.image_id != stored.id
    sent.clear()
    at.run()
    sent.scan(at)
    assert len(sent.sizes) >= 2 and sent.longest() <= WORKING_MAX_SIDE
    full = png_download(services, result.image_id)()
    assert Image.open(io.BytesIO(full)).size == (WIDE, TALL) and read_recipe(full)["commands"]

    sent.clear()
    gallery = open_app("gallery")
    sent.scan(gallery)
    assert sent.longest() <= THUMBNAIL_MAX_SIDE  # cards get thumbnails


def test_every_click_tool_works_on_the_read_only_working_copy(services: Services) -> None:
    labels = _ellipse_labels(TALL, WIDE)
    stored = store_array(services, _painted(labels))
    working = working_rgb(services, stored.id)
    point = (WORKING[1] // 2, round(WORKING[0] * 0.55))  # the middle of the shirt
    working_labels = resize_labels(labels, WORKING)
    for method in ("flood", "segment"):
        region = sel.region_at(working, point, 24, method, working_labels)
        assert region.shape == WORKING and region[point[1], point[0]]
    corner = working[:200, :300]  # GrabCut is slow at full working size; a read-only view of it is enough here
    assert not corner.flags.writeable and sel.region_at(corner, (150, 100), 24, "grabcut").shape == (200, 300)
