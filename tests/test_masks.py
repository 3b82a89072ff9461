"""Masks from labels and selections, their morphology, feathering and PNG form."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from core.masks import (
    SELECTION,
    InvalidMask,
    MissingSelection,
    UnknownLabel,
    build_mask,
    dilate,
    erode,
    feather,
    feather_band,
    invert,
    mask_from_labels,
    mask_from_png,
    mask_to_png,
)

NAMES = ("Background", "Hair", "Upper-clothes", "Face")


@pytest.fixture
def label_map() -> np.ndarray:
    labels = np.zeros((40, 60), dtype=np.int64)
    labels[2:10, 20:40] = 1
    labels[10:20, 22:38] = 3
    labels[20:40, 10:50] = 2
    return labels


def test_labels_union(label_map: np.ndarray) -> None:
    mask = mask_from_labels(label_map, NAMES, ["Hair", "Face"])
    assert mask.dtype == bool and mask.shape == label_map.shape
    np.testing.assert_array_equal(mask, (label_map == 1) | (label_map == 3))
    assert not mask_from_labels(label_map, NAMES, []).any()


def test_an_unknown_label_names_itself_and_the_known_ones(label_map: np.ndarray) -> None:
    with pytest.raises(UnknownLabel) as caught:
        mask_from_labels(label_map, NAMES, ["Hair", "Skin"])
    assert caught.value.label == "Skin" and caught.value.known == NAMES
    assert isinstance(caught.value, KeyError) and "Skin" in str(caught.value) and "Face" in str(caught.value)


def test_build_mask_unions_selection_and_labels(label_map: np.ndarray) -> None:
    selection = np.zeros(label_map.shape, dtype=bool)
    selection[0:3, 0:3] = True
    mask = build_mask([SELECTION, "Hair"], label_map=label_map, label_names=NAMES,
                      selection=selection, shape=label_map.shape)
    np.testing.assert_array_equal(mask, selection | (label_map == 1))
    only = build_mask([SELECTION], selection=selection, shape=label_map.shape)
    np.testing.assert_array_equal(only, selection)


def test_no_targets_means_the_whole_image() -> None:
    mask = build_mask([], shape=(7, 9))
    assert mask.shape == (7, 9) and mask.dtype == bool and mask.all()


def test_selection_without_a_selection_is_refused(label_map: np.ndarray) -> None:
    with pytest.raises(MissingSelection, match="nothing is selected"):
        build_mask([SELECTION], label_map=label_map, label_names=NAMES, shape=label_map.shape)


def test_labels_without_a_segmentation_point_to_selection() -> None:
    with pytest.raises(UnknownLabel) as caught:
        build_mask(["Hair"], shape=(5, 5))
    assert caught.value.label == "Hair" and caught.value.known == ()
    assert SELECTION in str(caught.value)


def test_a_selection_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(InvalidMask):
        build_mask([SELECTION], selection=np.ones((4, 4), dtype=bool), shape=(5, 5))


def _square(size: int = 61, half: int = 15) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    c = size // 2
    mask[c - half:c + half + 1, c - half:c + half + 1] = True
    return mask


def test_dilate_erode_invert() -> None:
    mask = _square()
    grown, shrunk = dilate(mask, 3), erode(mask, 3)
    assert grown.dtype == bool and (grown >= mask).all() and grown.sum() > mask.sum()
    assert (shrunk <= mask).all() and shrunk.sum() == 25 ** 2
    assert grown[30, 30 + 15 + 3] and not grown[30, 30 + 15 + 4]
    np.testing.assert_array_equal(invert(mask), ~mask)
    np.testing.assert_array_equal(dilate(mask, 0), mask)
    assert erode(np.ones((8, 8), dtype=bool), 2).all(), "the image border does not erode"
    with pytest.raises(ValueError):
        dilate(mask, -1)


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance from each pixel to the nearest pixel of ``mask`` (0 on it): an oracle
    independent of ``core.masks``' morphology."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def test_feather_is_zero_outside_the_band_one_inside_and_monotone() -> None:
    mask, px = _square(), 4
    alpha = feather(mask, px)
    outside, inside = _distance_to(mask), _distance_to(~mask)
    assert alpha.dtype == np.float32 and alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert (alpha[outside > px + 0.5] == 0.0).all(), "nothing beyond the feather radius (half a pixel of rounding)"
    assert (alpha[inside > 2 * px + 0.5] == 1.0).all(), "fully opaque once the whole blur window is inside"
    soft = (alpha > 0) & (alpha < 1)
    assert soft.any() and (outside[soft] <= px + 0.5).all() and (inside[soft] <= 2 * px + 0.5).all()
    row = alpha[30, :31]  # from the left border to the centre, across the edge
    assert (np.diff(row) >= 0).all() and row[0] == 0.0 and row[-1] == 1.0
    assert 0.3 < alpha[30, 15] < 0.7, "the ramp is centred on the edge"
    np.testing.assert_array_equal(feather(mask, 0), mask.astype(np.float32))


def test_the_feather_band_is_the_mask_grown_by_its_radius() -> None:
    mask = _square()
    for px in (1, 3, 4, 9):
        band, outside = feather_band(mask, px), _distance_to(mask)
        assert band[outside <= px].all() and not band[outside > px + 0.5].any()


def test_feather_of_the_whole_image_is_all_ones() -> None:
    assert (feather(np.ones((20, 30), dtype=bool), 5) == 1.0).all()


def test_png_round_trip() -> None:
    mask = _square(40, 7)
    data = mask_to_png(mask)
    assert data.startswith(b"\x89PNG")
    np.testing.assert_array_equal(mask_from_png(data, mask.shape), mask)


def test_png_of_another_size_is_resized_hard() -> None:
    big = np.zeros((80, 120), dtype=bool)
    big[20:60, 30:90] = True
    small = mask_from_png(mask_to_png(big), (40, 60))
    expected = np.zeros((40, 60), dtype=bool)
    expected[10:30, 15:45] = True
    assert small.dtype == bool
    np.testing.assert_array_equal(small, expected)


def test_png_nonzero_is_selected_and_transparent_is_not() -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[2:5, 2:5] = (255, 0, 0, 255)      # a red brush stroke
    rgba[6:9, 6:9] = (255, 255, 255, 0)    # white but fully transparent
    out = io.BytesIO()
    Image.fromarray(rgba).save(out, format="PNG")
    mask = mask_from_png(out.getvalue(), (10, 10))
    assert mask[2:5, 2:5].all() and mask.sum() == 9


def test_bytes_that_are_not_an_image_are_refused() -> None:
    with pytest.raises(InvalidMask):
        mask_from_png(b"not a png", (4, 4))
