"""Classical edits: each changes only its feather band, and in the direction the word says."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from core.classical import (
    ADJUST_PROPERTIES,
    LARGE_REMOVAL_SHARE,
    OutOfRange,
    RemoveResult,
    UnknownProperty,
    adjust,
    blur,
    feather_for,
    recolor,
    removal_region,
    remove,
)
from core.colors import parse_color
from core.masks import erode

H, W = 120, 160
PX = 3
#: How far `remove` reaches past its mask on pictures this small (it covers the mask's anti-aliased rim).
REMOVAL_RIM_PX = 3


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A textured, moderately coloured picture: gradients, stripes and noise."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rgb = np.stack([
        110 + 50 * np.sin(xx / 6) + 0.2 * yy,
        100 + 35 * np.cos(yy / 5) + 0.1 * xx,
        80 + 25 * np.sin((xx + yy) / 9),
    ], axis=-1)
    return np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return ((xx - 80) / 45.0) ** 2 + ((yy - 60) / 35.0) ** 2 <= 1.0


def lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def laplacian_var(image: np.ndarray, region: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F)[region].var())


def farther_than(mask: np.ndarray, px: float) -> np.ndarray:
    """Pixels more than ``px`` (plus half a pixel of rounding) from the mask, by Euclidean distance.

    An oracle independent of ``core.masks``: a feather or rim ``px`` wide never reaches them.
    """
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance > px + 0.5


def assert_unchanged_beyond(before: np.ndarray, after: np.ndarray, mask: np.ndarray, px: float) -> None:
    """The edit changed something, and nothing farther than ``px`` from the mask (bit for bit)."""
    assert after.dtype == np.uint8 and after.shape == before.shape and after is not before
    changed = (after != before).any(axis=-1)
    assert changed.any(), "the edit changed nothing"
    leaked = changed & farther_than(mask, px)
    assert not leaked.any(), f"{int(leaked.sum())} pixels changed farther than {px} px from the mask"


Edit = Callable[[np.ndarray, np.ndarray], np.ndarray]
EDITS: dict[str, Edit] = {
    "recolor blue": lambda img, m: recolor(img, m, (0, 0, 255), feather_px=PX),
    "recolor white": lambda img, m: recolor(img, m, (255, 255, 255), feather_px=PX),
    "recolor black": lambda img, m: recolor(img, m, (0, 0, 0), feather_px=PX),
    **{f"adjust {p} {a:+}": (lambda img, m, p=p, a=a: adjust(img, p, a, m, feather_px=PX))
       for p in ADJUST_PROPERTIES for a in (-0.3, 0.3)},
    "blur": lambda img, m: blur(img, m, 0.5, feather_px=PX),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_only_the_feather_band_changes(name: str, image: np.ndarray, mask: np.ndarray) -> None:
    before = image.copy()
    after = EDITS[name](image, mask)
    np.testing.assert_array_equal(image, before, "the input was modified")
    assert_unchanged_beyond(image, after, mask, PX)


def test_remove_changes_only_its_region(image: np.ndarray, mask: np.ndarray) -> None:
    small = np.zeros_like(mask)
    small[50:60, 70:80] = True
    result = remove(image, small)
    assert isinstance(result, RemoveResult)
    assert_unchanged_beyond(image, result.image, small, REMOVAL_RIM_PX)


def test_deep_inside_the_edit_is_complete_and_the_edge_is_soft(image: np.ndarray, mask: np.ndarray) -> None:
    after = recolor(image, mask, (0, 0, 255), feather_px=PX)
    full = recolor(image, mask, (0, 0, 255), feather_px=0)
    deep = erode(mask, 2 * PX)
    np.testing.assert_array_equal(after[deep], full[deep])
    rim = ~mask & ~farther_than(mask, PX)
    assert (after[rim] != image[rim]).any(), "the edit fades out beyond the edge"
    assert_unchanged_beyond(image, full, mask, 0)


# --------------------------------------------------------------------- directions

@pytest.mark.parametrize("text", ["blue", "#0000FF", "蓝色"])
def test_recolor_to_blue_moves_hue_and_keeps_texture(text: str, image: np.ndarray, mask: np.ndarray) -> None:
    after = recolor(image, mask, parse_color(text), feather_px=PX)
    hue = cv2.cvtColor(after, cv2.COLOR_RGB2HSV)[..., 0][erode(mask, 2 * PX)].astype(np.float32)
    assert abs(float(np.median(hue)) - 120) < 15  # OpenCV hue: blue is 240° / 2
    before_l, after_l = lab(image)[mask][:, 0], lab(after)[mask][:, 0]
    assert np.corrcoef(before_l, after_l)[0, 1] > 0.9
    assert abs(float(after_l.mean() - before_l.mean())) < 3, "a coloured target keeps L*"


@pytest.mark.parametrize(("color", "lighter"), [((255, 255, 255), True), ((0, 0, 0), False)])
def test_recolor_to_white_or_black_moves_lightness(color: tuple[int, int, int], lighter: bool,
                                                   image: np.ndarray, mask: np.ndarray) -> None:
    after = recolor(image, mask, color, feather_px=PX)
    before_l, after_l = lab(image)[mask][:, 0], lab(after)[mask][:, 0]
    shift = float(after_l.mean() - before_l.mean())
    assert shift > 25 if lighter else shift < -25
    assert np.corrcoef(before_l, after_l)[0, 1] > 0.9, "the shading survives"
    chroma = np.hypot(*lab(after)[mask][:, 1:].T)
    assert float(np.median(chroma)) < 3


def test_recolor_of_an_empty_mask_is_a_copy(image: np.ndarray) -> None:
    after = recolor(image, np.zeros(image.shape[:2], dtype=bool), (255, 0, 0))
    assert after is not image
    np.testing.assert_array_equal(after, image)


def _inside(image: np.ndarray, mask: np.ndarray, prop: str, amount: float) -> tuple[np.ndarray, np.ndarray]:
    after = adjust(image, prop, amount, mask, feather_px=PX)
    return lab(image)[mask], lab(after)[mask]


@pytest.mark.parametrize("amount", [0.3, -0.3])
def test_brightness(amount: float, image: np.ndarray, mask: np.ndarray) -> None:
    before, after = _inside(image, mask, "brightness", amount)
    assert np.sign(after[:, 0].mean() - before[:, 0].mean()) == np.sign(amount)
    assert abs(float(after[:, 0].mean() - before[:, 0].mean())) > 5


@pytest.mark.parametrize("amount", [0.3, -0.3])
def test_contrast(amount: float, image: np.ndarray, mask: np.ndarray) -> None:
    before, after = _inside(image, mask, "contrast", amount)
    assert np.sign(after[:, 0].std() - before[:, 0].std()) == np.sign(amount)
    assert abs(float(after[:, 0].mean() - before[:, 0].mean())) < 2


@pytest.mark.parametrize("amount", [0.3, -0.3])
def test_saturation(amount: float, image: np.ndarray, mask: np.ndarray) -> None:
    before, after = _inside(image, mask, "saturation", amount)
    chroma_before, chroma_after = np.hypot(*before[:, 1:].T), np.hypot(*after[:, 1:].T)
    assert np.sign(chroma_after.mean() - chroma_before.mean()) == np.sign(amount)


@pytest.mark.parametrize("amount", [0.3, -0.3])
def test_warmth(amount: float, image: np.ndarray, mask: np.ndarray) -> None:
    before, after = _inside(image, mask, "warmth", amount)
    assert np.sign(after[:, 2].mean() - before[:, 2].mean()) == np.sign(amount)
    assert abs(float(after[:, 2].mean() - before[:, 2].mean())) > 3


@pytest.mark.parametrize("amount", [0.3, -0.3])
def test_sharpness(amount: float, image: np.ndarray, mask: np.ndarray) -> None:
    after = adjust(image, "sharpness", amount, mask, feather_px=PX)
    inside = erode(mask, 2)
    assert np.sign(laplacian_var(after, inside) - laplacian_var(image, inside)) == np.sign(amount)


def test_adjust_without_a_mask_is_the_whole_image(image: np.ndarray) -> None:
    after = adjust(image, "brightness", 0.3)
    assert (lab(after)[..., 0] >= lab(image)[..., 0] - 0.5).all()
    assert (after != image).any(axis=-1).mean() > 0.9


def test_adjust_by_zero_changes_nothing(image: np.ndarray, mask: np.ndarray) -> None:
    np.testing.assert_array_equal(adjust(image, "contrast", 0.0, mask), image)


@pytest.mark.parametrize("amount", [1.01, -1.5, float("nan"), float("inf")])
def test_amounts_outside_the_range_are_refused(amount: object, image: np.ndarray) -> None:
    with pytest.raises(OutOfRange) as caught:
        adjust(image, "brightness", amount)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError) and caught.value.name == "amount"


@pytest.mark.parametrize("amount", ["0.3", None, True])
def test_amounts_that_are_not_numbers_are_refused(amount: object, image: np.ndarray) -> None:
    with pytest.raises(TypeError, match="amount must be a number"):
        adjust(image, "brightness", amount)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [-1.0, 1.0])
def test_the_range_ends_are_allowed(amount: float, image: np.ndarray, mask: np.ndarray) -> None:
    for prop in ADJUST_PROPERTIES:
        assert_unchanged_beyond(image, adjust(image, prop, amount, mask, feather_px=PX), mask, PX)


def test_unknown_properties_are_refused(image: np.ndarray) -> None:
    with pytest.raises(UnknownProperty) as caught:
        adjust(image, "exposure", 0.3)
    assert caught.value.prop == "exposure" and "brightness" in str(caught.value)


def test_blur_lowers_detail_and_grows_with_strength(image: np.ndarray, mask: np.ndarray) -> None:
    inside = erode(mask, 2)
    weak = laplacian_var(blur(image, mask, 0.1, feather_px=PX), inside)
    strong = laplacian_var(blur(image, mask, 1.0, feather_px=PX), inside)
    assert strong < weak < laplacian_var(image, inside)


def test_blur_of_the_background_does_not_pull_in_the_subject() -> None:
    picture = np.full((100, 100, 3), 200, dtype=np.uint8)
    picture[30:70, 30:70] = (200, 0, 0)  # a red subject on grey
    background = np.ones((100, 100), dtype=bool)
    background[30:70, 30:70] = False
    after = blur(picture, background, 1.0, feather_px=2)
    far = farther_than(~background, 4)  # background beyond the feather rim
    assert np.abs(after[far].astype(int) - 200).max() <= 1


@pytest.mark.parametrize("strength", [0.0, -0.2, 1.2, float("nan")])
def test_blur_strength_outside_the_range_is_refused(strength: float, image: np.ndarray, mask: np.ndarray) -> None:
    with pytest.raises(OutOfRange):
        blur(image, mask, strength)


def test_remove_fills_a_small_square_from_the_gradient() -> None:
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float32)
    gradient = np.stack([40 + xx, 60 + yy, 200 - 0.5 * xx], axis=-1).astype(np.uint8)
    picture = gradient.copy()
    square = np.zeros((120, 160), dtype=bool)
    square[50:62, 70:82] = True
    picture[square] = (255, 0, 255)  # a magenta blot to erase
    result = remove(picture, square)
    region = removal_region(square, picture.shape)
    error = np.abs(result.image[region].astype(int) - gradient[region].astype(int))
    assert error.max() <= 12 and error.mean() < 4
    assert result.notes == []
    assert_unchanged_beyond(picture, result.image, square, REMOVAL_RIM_PX)


def test_remove_of_a_large_area_says_it_smears(image: np.ndarray) -> None:
    large = np.zeros(image.shape[:2], dtype=bool)
    large[10:100, 20:120] = True
    assert large.mean() > LARGE_REMOVAL_SHARE
    result = remove(image, large)
    assert len(result.notes) == 1
    assert "CHATEDIT_INPAINT_MODEL" in result.notes[0] and "smear" in result.notes[0]


def test_feather_for_scales_with_the_image() -> None:
    assert feather_for((100, 80, 3)) == 2
    assert feather_for((3000, 4000, 3)) == 16


def test_bad_images_masks_and_colours_are_refused(image: np.ndarray, mask: np.ndarray) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        recolor(image.astype(np.float32), mask, (1, 2, 3))
    with pytest.raises(ValueError, match="mask"):
        recolor(image, mask[:10], (1, 2, 3))
    with pytest.raises(ValueError, match="colour"):
        recolor(image, mask, (300, 0, 0))
