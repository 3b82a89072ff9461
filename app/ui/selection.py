"""The person's selection (the ``Selection`` target): brush strokes, clicks, invert, clear.

A selection is a boolean H×W array the size of the base image's working copy (at most
1,280 px on the long side), kept with the history as a PNG blob (white = selected,
``jobs.selections``) so it survives a reload; the edit job reads it as the ``Selection``
target, scaled up to the full image.
The widgets (drawable canvas, clickable image) are custom components imported only
inside :func:`render_tools`, where a Streamlit app is running; the arithmetic is here,
in plain functions the tests call.
"""

from __future__ import annotations

import io
from typing import Literal

import cv2
import numpy as np
import streamlit as st
from PIL import Image as PILImage

from app.ui.identity import current_actor
from core.mask_tools import PointOutsideImage, auto_fill, fill_points, select_at
from core.masks import InvalidMask, mask_from_png, resize_mask
from jobs.selections import selection_png, store_selection
from jobs.services import Services
from jobs.services.access import require_history_write

CANVAS_WIDTH = 512
#: Session keys. Tests set the components' values through these (``brush_strokes``, ``click_point``).
SELECTION = "selection"
SELECTION_IMAGE = "selection_image_id"
#: The history whose stored selection the session's copy is (read once per history and session).
SELECTION_HISTORY = "selection_history_id"
#: The editor's session key of the open history.
OPEN_HISTORY = "open_history"
STROKES = "brush_strokes"
CLICK = "click_point"
LAST_CLICK = "click_point_done"

Mode = Literal["add", "erase"]


def empty(shape: tuple[int, int]) -> np.ndarray:
    return np.zeros(shape, dtype=bool)


def combine(selection: np.ndarray, region: np.ndarray, mode: Mode) -> np.ndarray:
    """Add ``region`` to the selection, or erase it from the selection."""
    if region.shape != selection.shape:
        region = resize_mask(region, selection.shape)
    return selection | region if mode == "add" else selection & ~region


def strokes_mask(rgba: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Where the canvas was painted (alpha > 0), scaled to the working copy's ``shape``."""
    return resize_mask(np.asarray(rgba)[..., 3] > 0, shape)


#: How a click selects: the whole part under it (needs a segmentation), similar colour, or the object around it.
CLICK_METHODS = {"Whole part": "segment", "Similar colour": "flood", "Object (GrabCut)": "grabcut"}


def region_at(rgb: np.ndarray, point: tuple[int, int], tolerance: int, method: str = "flood",
              label_map: np.ndarray | None = None) -> np.ndarray:
    """The region a click selects: its whole segment (``segment``), a flood fill by colour, or GrabCut around it."""
    try:
        if method == "segment":
            if label_map is None:
                raise ValueError("there are no parts to pick from: this image has no segmentation")
            return np.asarray(fill_points(label_map, [point]), dtype=bool)
        return np.asarray(select_at(rgb, point, method=method, tolerance=tolerance), dtype=bool)  # type: ignore[arg-type]
    except PointOutsideImage as exc:
        raise ValueError(str(exc)) from None


def brushed_region(strokes: np.ndarray, shape: tuple[int, int], label_map: np.ndarray | None,
                   fill_parts: bool) -> np.ndarray:
    """The painted pixels, plus (``fill_parts`` with a segmentation) every part the strokes really touch, whole."""
    painted = strokes_mask(strokes, shape)
    if fill_parts and label_map is not None:
        return np.asarray(auto_fill(painted, label_map), dtype=bool)
    return painted


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def to_png(selection: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(selection.astype(np.uint8) * 255, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def overlay(rgb: np.ndarray, selection: np.ndarray) -> np.ndarray:
    """The image with the selection tinted, and its outline drawn, for the person to see what is selected."""
    shown = rgb.astype(np.float32)
    tint = np.array([255, 60, 200], np.float32)
    shown[selection] = shown[selection] * 0.55 + tint * 0.45
    shown = shown.astype(np.uint8)
    contours, _ = cv2.findContours(selection.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(shown, contours, -1, (255, 255, 255), 2)
    return shown


# ---------------------------------------------------------------- session state


def current(image_id: int, shape: tuple[int, int]) -> np.ndarray | None:
    """The open history's selection at the base image's ``shape``, or None when nothing is selected.

    The history keeps it (``jobs.selections``); the session holds a decoded copy, read
    from the history the first time this session shows it, so a reload finds it again.
    """
    history_id = st.session_state.get(OPEN_HISTORY)
    if history_id is not None and st.session_state.get(SELECTION_HISTORY) != history_id:
        st.session_state[SELECTION_HISTORY] = history_id
        png = selection_png(_services(), history_id)
        st.session_state[SELECTION_IMAGE] = image_id
        try:
            st.session_state[SELECTION] = None if png is None else mask_from_png(png, shape)
        except InvalidMask:
            st.session_state[SELECTION] = None  # an unreadable stored mask is nothing selected, not a broken page
    selection = st.session_state.get(SELECTION)
    if selection is None or selection.shape != shape or not selection.any():
        return None
    return selection


def store(image_id: int, selection: np.ndarray | None) -> None:
    """Make ``selection`` the open history's selection (None or an empty mask: nothing selected).

    The history keeps it only for someone who may change the history (``PermissionDenied`` otherwise).
    """
    history_id = st.session_state.get(OPEN_HISTORY)
    if history_id is not None:
        services = _services()
        require_history_write(services, current_actor().id, history_id)
        keep = selection is not None and bool(selection.any())
        store_selection(services, history_id, to_png(selection) if keep else None)  # type: ignore[arg-type]
        st.session_state[SELECTION_HISTORY] = history_id
    st.session_state[SELECTION_IMAGE] = image_id
    st.session_state[SELECTION] = selection


def _services() -> Services:
    from app.ui.common import get_services

    return get_services()


def blob_key(services: Services, selection: np.ndarray | None) -> str | None:
    """Store the selection as a PNG blob for the edit job; None when nothing is selected."""
    if selection is None or not selection.any():
        return None
    return services.blobs.put(to_png(selection))


def on_screen(rgb: np.ndarray, selection: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """The picture the tools show, at ``size`` (width, height): the image, the selection tinted on it.

    It is made at the size it is shown, so the page sends the browser a few kilobytes
    however large the photo.
    """
    width, height = size
    small = rgb if (rgb.shape[1], rgb.shape[0]) == size else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return small if selection is None else overlay(small, resize_mask(selection, (height, width)))


def render_tools(image_id: int, rgb: np.ndarray, label_map: np.ndarray | None = None) -> None:
    """Brush, eraser, click-to-select, invert and clear, over the base image's working copy ``rgb``.

    ``label_map`` is its parts, if found, at the working copy's size; selections are made at
    that size too, and the edit job scales them up to the full image.
    """
    shape = rgb.shape[:2]
    selection = current(image_id, shape)
    working = selection if selection is not None else empty(shape)
    scale = min(1.0, CANVAS_WIDTH / rgb.shape[1])
    width, height = round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)
    shown = on_screen(rgb, selection, (width, height))

    tool = st.radio("Tool", ["Brush", "Click to select"], horizontal=True, key="mask_tool")
    mode: Mode = "add" if st.radio("Mode", ["Add", "Erase"], horizontal=True, key="mask_mode") == "Add" else "erase"
    if tool == "Brush":
        size = st.slider("Brush size (px)", 2, 80, 24, key="brush_size")
        from streamlit_drawable_canvas import st_canvas

        result = st_canvas(
            fill_color="rgba(255, 0, 200, 0.35)", stroke_width=size,
            stroke_color="rgba(255, 0, 200, 0.6)" if mode == "add" else "rgba(40, 40, 40, 0.6)",
            background_image=_jpeg(shown), height=height, width=width, drawing_mode="freedraw",
            return_image_data=True, key=f"canvas_{image_id}_{st.session_state.get('canvas_round', 0)}",
        )
        if result is not None and result.json_data is not None and result.json_data.get("objects"):
            st.session_state[STROKES] = result.image_data
        fill_parts = label_map is not None and st.checkbox(
            "Fill the parts the strokes touch", value=True, key="brush_fill_parts",
            help="A part touched by enough painted pixels is selected whole, so a rough stroke is enough.")
        st.caption("Paint over the part to edit, then apply the strokes to the selection.")
        if st.button("Apply strokes", key="apply_strokes"):
            strokes = st.session_state.pop(STROKES, None)
            if strokes is None:
                st.warning("Paint on the image first: there are no strokes to apply.")
            else:
                store(image_id, combine(working, brushed_region(strokes, shape, label_map, fill_parts), mode))
                st.session_state["canvas_round"] = st.session_state.get("canvas_round", 0) + 1
                st.rerun()
    else:
        methods = [m for m, v in CLICK_METHODS.items() if v != "segment" or label_map is not None]
        method = CLICK_METHODS[st.radio("A click selects", methods, horizontal=True, key="click_method",
                                        help="Whole part: the segment under the click. Similar colour: the "
                                             "connected area of similar colour. Object: GrabCut in a box "
                                             "around the click, for an object on a busy background.") or methods[0]]
        tolerance = 24
        if method == "flood":
            tolerance = st.slider("Colour tolerance", 1, 100, 24, key="click_tolerance",
                                  help="How different a colour may be from the clicked one and still be selected.")
        from streamlit_image_coordinates import streamlit_image_coordinates

        clicked = streamlit_image_coordinates(shown, width=width, key=f"coords_{image_id}", image_format="JPEG",
                                              jpeg_quality=85)
        if clicked is not None:
            scale_x = rgb.shape[1] / clicked.get("width", width)
            scale_y = rgb.shape[0] / clicked.get("height", height)
            st.session_state[CLICK] = (min(rgb.shape[1] - 1, int(clicked["x"] * scale_x)),
                                       min(rgb.shape[0] - 1, int(clicked["y"] * scale_y)))
        st.caption({"segment": "Click a part: the whole part under the click is added (or erased).",
                    "flood": "Click a region: the area of similar colour around the click is added (or erased).",
                    "grabcut": "Click an object: the object around the click is added (or erased)."}[method])
        point = st.session_state.get(CLICK)
        if point is not None and point != st.session_state.get(LAST_CLICK):
            st.session_state[LAST_CLICK] = point
            try:
                region = region_at(rgb, tuple(point), tolerance, method, label_map)
            except ValueError as exc:
                st.warning(f"That click cannot be used: {exc}.")
            else:
                store(image_id, combine(working, region, mode))
                st.rerun()

    left, right, info = st.columns([1, 1, 3])
    if left.button("Invert", key="invert_selection"):
        store(image_id, ~working)
        st.rerun()
    if right.button("Clear", key="clear_selection", disabled=selection is None):
        store(image_id, None)
        st.session_state["canvas_round"] = st.session_state.get("canvas_round", 0) + 1
        st.rerun()
    if selection is None:
        info.caption("Nothing selected: commands apply to the whole image or to named parts.")
    else:
        info.caption(f"Selected {selection.mean():.0%} of the image: commands can target **Selection**.")
