"""Masks from keywords, clicks and brush strokes on a drawn person segmented by a hand-built ONNX model.

Every expectation is a set of pixels known from the drawing, so each test asserts
exact equality, not overlap.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.mask_tools import (
    EdgeRule,
    InvalidMaskConfig,
    PointOutsideImage,
    auto_fill,
    fill_points,
    flood_select,
    grabcut_select,
    load_mask_config,
    optimise_mask,
    parse_mask_config,
    select_at,
)
from core.masks import UnknownLabel, dilate, invert, mask_from_labels
from core.segmentation import SegmentationResult, load_segmenter
from tests.test_segmentation_support import (
    ID,
    LABELS,
    build_colour_segmenter,
    paint,
    person_labels,
)

ROOT = Path(__file__).parents[1]


def _bench_module():  # type: ignore[no-untyped-def]
    """bench/thesis_mask_optimisation.py, the literal per-pixel Algorithm 1 (bench/ is not a package)."""
    name = "thesis_mask_optimisation"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def segmented(tmp_path_factory: pytest.TempPathFactory) -> SegmentationResult:
    model = build_colour_segmenter(tmp_path_factory.mktemp("models") / "colours.onnx")
    return load_segmenter(model).segment(paint(person_labels()))


def test_the_segmenter_sees_exactly_the_drawing(segmented: SegmentationResult) -> None:
    assert np.array_equal(segmented.label_map, person_labels())


def test_keyword_masks_are_the_union_of_the_labels(segmented: SegmentationResult) -> None:
    drawn = person_labels()
    mask = mask_from_labels(segmented.label_map, segmented.label_names, ["Hair", "Dress"])
    assert np.array_equal(mask, (drawn == ID["Hair"]) | (drawn == ID["Dress"]))
    assert np.array_equal(invert(mask), ~mask)
    with pytest.raises(UnknownLabel, match="'Skin' is not a part of this image"):
        mask_from_labels(segmented.label_map, segmented.label_names, ["Skin"])


def test_a_click_fills_its_whole_segment(segmented: SegmentationResult) -> None:
    drawn = person_labels()
    # The big hair ellipse: the separate lock of hair at (104, 20) is the same segment.
    hair = fill_points(segmented.label_map, [(64, 9)])
    assert np.array_equal(hair, drawn == ID["Hair"])
    assert hair[20, 104]
    both = fill_points(segmented.label_map, [(64, 9), (64, 100)])
    assert np.array_equal(both, (drawn == ID["Hair"]) | (drawn == ID["Dress"]))
    assert not fill_points(segmented.label_map, []).any()
    with pytest.raises(PointOutsideImage, match=r"\(x=128, y=3\) is outside the 128×128 image"):
        fill_points(segmented.label_map, [(128, 3)])


def test_auto_fill_fills_segments_touched_by_more_than_n_brushed_pixels(segmented: SegmentationResult) -> None:
    drawn = person_labels()
    brush = np.zeros(drawn.shape, dtype=bool)
    brush[60:70, 50:70] = True  # 200 pixels of Upper-clothes
    brush[100:110, 1:6] = True  # 50 pixels of Background
    brush[100:105, 50:60] = True  # 50 pixels of Dress
    filled = auto_fill(brush, segmented.label_map, min_pixels=100)
    assert np.array_equal(filled, brush | (drawn == ID["Upper-clothes"]))
    assert np.array_equal(auto_fill(brush, segmented.label_map, min_pixels=49),
                          brush | np.isin(drawn, [ID["Upper-clothes"], ID["Background"], ID["Dress"]]))
    assert np.array_equal(auto_fill(brush, segmented.label_map, min_pixels=50),
                          brush | (drawn == ID["Upper-clothes"]))  # "more than N": 50 is not more than 50
    assert load_mask_config().auto_fill_min_pixels == 100
    assert np.array_equal(auto_fill(brush, segmented.label_map), filled)


def test_the_kernel_radius_is_relative_to_the_image_size() -> None:
    rule = EdgeRule("Hair", "dilate", 80)
    assert rule.radius((512, 512)) == 6
    assert rule.radius((1024, 768)) == 10
    assert rule.radius((1024, 1024)) == 13
    assert rule.radius((40, 40)) == 1


def test_optimisation_grows_hair_and_clothes_by_the_kernel_but_never_into_the_face(
        segmented: SegmentationResult) -> None:
    drawn = person_labels()
    rules = load_mask_config().optimise
    assert [r.label for r in rules] == ["Hair", "Upper-clothes", "Dress"]
    hair = drawn == ID["Hair"]
    optimised = optimise_mask(hair, segmented.label_map, segmented.label_names)
    radius = rules[0].radius(drawn.shape)
    assert radius == 2
    expected = dilate(hair, radius) & ~(drawn == ID["Face"])
    assert np.array_equal(optimised, expected)
    assert (optimised & ~hair).sum() > 0

    # A face that is part of the mask may be grown into; an erode rule takes the edge band off.
    hair_and_face = np.isin(drawn, [ID["Hair"], ID["Face"]])
    assert np.array_equal(optimise_mask(hair_and_face, drawn, LABELS),
                          hair_and_face | dilate(hair, radius))
    torso = drawn == ID["Upper-clothes"]
    shrink = [EdgeRule("Upper-clothes", "erode", 32)]  # radius 4 at 128 px
    assert np.array_equal(optimise_mask(torso, drawn, LABELS, shrink),
                          torso & (cv2.erode(torso.astype(np.uint8), cv2.getStructuringElement(
                              cv2.MORPH_ELLIPSE, (9, 9)), borderType=cv2.BORDER_REPLICATE) > 0))
    # Labels without a rule, and rules whose label the mask does not hold, change nothing.
    arms = np.isin(drawn, [ID["Left-arm"], ID["Right-arm"]])
    assert np.array_equal(optimise_mask(arms, drawn, LABELS), arms)


def test_one_hair_pixel_grows_into_exactly_the_kernel() -> None:
    labels = np.zeros((512, 512), dtype=np.uint8)
    labels[200, 300] = ID["Hair"]
    labels[200, 303] = ID["Face"]
    grown = optimise_mask(labels == ID["Hair"], labels, LABELS)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13)).astype(bool)  # rate 80 at 512 px: 6 px
    expected = np.zeros_like(grown)
    expected[194:207, 294:307] = kernel
    expected[200, 303] = False
    assert np.array_equal(grown, expected)


def test_the_vectorised_optimisation_gives_the_literal_algorithms_mask() -> None:
    literal = _bench_module().optimise_mask_literal
    drawn = person_labels()
    mask = np.isin(drawn, [ID["Hair"], ID["Upper-clothes"], ID["Dress"]])
    rules = load_mask_config().optimise
    assert np.array_equal(optimise_mask(mask, drawn, LABELS), literal(mask, drawn, LABELS, rules))

    rng = np.random.default_rng(0)
    names = ("Background", "Hair", "Face", "Upper-clothes")
    for trial in range(12):
        height, width = (int(v) for v in rng.integers(24, 80, 2))
        field = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 3)
        labels = np.digitize(field, np.quantile(field, [0.3, 0.5, 0.7])).astype(np.uint8)
        mask = rng.random((height, width)) < 0.5 if trial % 3 == 0 else np.isin(labels, [1, 3])
        mixed = [EdgeRule("Hair", "dilate", float(rng.integers(5, 40)), ("Face",)),
                 EdgeRule("Upper-clothes", "erode", float(rng.integers(5, 40))),
                 EdgeRule("Face", "dilate", 10.0)]
        rng.shuffle(mixed)
        assert np.array_equal(optimise_mask(mask, labels, names, mixed), literal(mask, labels, names, mixed)), trial


def test_offline_flood_selection_takes_the_region_of_similar_colour() -> None:
    drawn = person_labels()
    image = paint(drawn)
    torso = flood_select(image, (60, 65))
    assert np.array_equal(torso, drawn == ID["Upper-clothes"])
    # Flood fill is connected: the separate lock of hair is not part of the clicked hair.
    hair = flood_select(image, (64, 9))
    lock = np.zeros_like(hair)
    cv2.ellipse(lock.view(np.uint8), (104, 20), (6, 9), 0, 0, 360, 1, thickness=-1, lineType=cv2.LINE_8)
    assert np.array_equal(hair, (drawn == ID["Hair"]) & ~lock)
    assert np.array_equal(select_at(image, (60, 65)), torso)
    with pytest.raises(PointOutsideImage):
        flood_select(image, (-1, 0))


def test_offline_grabcut_selection_finds_an_object_on_a_busy_background() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 90, (120, 160, 3), dtype=np.uint8)  # dark, noisy background
    obj = np.zeros((120, 160), dtype=np.uint8)
    cv2.circle(obj, (80, 60), 18, 1, thickness=-1)
    image[obj > 0] = rng.integers(200, 256, (int(obj.sum()), 3), dtype=np.uint8)
    selected = grabcut_select(image, (80, 60))
    truth = obj > 0
    iou = (selected & truth).sum() / (selected | truth).sum()
    assert iou >= 0.9
    assert np.array_equal(select_at(image, (80, 60), method="grabcut"), selected)
    with pytest.raises(ValueError, match="unknown selection method 'magic'"):
        select_at(image, (80, 60), method="magic")  # type: ignore[arg-type]


def test_a_bad_mask_config_names_the_entry() -> None:
    with pytest.raises(InvalidMaskConfig, match=r"optimise\[0\] \(Hair\): mode must be 'dilate' or 'erode'"):
        parse_mask_config({"optimise": [{"label": "Hair", "mode": "grow", "rate": 80}]})
    with pytest.raises(InvalidMaskConfig, match=r"optimise\[0\] \(Hair\): rate must be > 0"):
        parse_mask_config({"optimise": [{"label": "Hair", "mode": "dilate", "rate": 0}]})
    with pytest.raises(InvalidMaskConfig, match="missing or mistypes 'rate'"):
        parse_mask_config({"optimise": [{"label": "Hair", "mode": "dilate"}]})
