"""Exact CPU edits: recolor, adjust, blur and remove (OpenCV inpainting).

These are the offline editor: they run with no GPU and no model, and they are exact in
one sense that matters to the person: every operation changes only its mask and a thin
feathered band around it (`core.masks.feather_band`); every other pixel comes back
bit-identical. Colour work happens in CIELAB so "brighter" and "bluer" mean what a
person sees, not what one RGB channel does.

Images are RGB uint8 arrays H×W×3, masks boolean H×W; every function returns a new array.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from core.masks import dilate, feather, feather_band

#: The properties `adjust` understands (the contract's `paras_enum`).
ADJUST_PROPERTIES = ("brightness", "contrast", "saturation", "sharpness", "warmth")
#: Above this share of the image, classical inpainting visibly smears.
LARGE_REMOVAL_SHARE = 0.15
#: Target colours with less chroma, or lightness beyond these bounds, move L* too.
_NEUTRAL_CHROMA = 12.0
_DARK_L, _LIGHT_L = 12.0, 92.0
#: Telea's neighbourhood; larger radii cost quadratically and add little.
_INPAINT_RADIUS = 3


class OutOfRange(ValueError):
    """A number outside the range the contract allows (never clamped silently)."""

    def __init__(self, name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
        self.name, self.value, self.low, self.high = name, value, low, high
        bracket = "(" if low_open else "["
        super().__init__(f"{name} must be in {bracket}{low:g}, {high:g}], got {value!r}")


class UnknownProperty(ValueError):
    """An `adjust` property that is not one of `ADJUST_PROPERTIES`."""

    def __init__(self, prop: str) -> None:
        self.prop = prop
        self.known = ADJUST_PROPERTIES
        super().__init__(f"{prop!r} is not an adjustable property; use one of {', '.join(ADJUST_PROPERTIES)}")


@dataclass(frozen=True)
class RemoveResult:
    """The filled image and sentences the person should read about the result."""

    image: np.ndarray
    notes: list[str] = field(default_factory=list)


def feather_for(image_shape: Sequence[int]) -> int:
    """A default feather width that looks the same on a thumbnail and on a 4K photo."""
    height, width = image_shape[:2]
    return max(2, round(0.004 * max(height, width)))


# ---------------------------------------------------------------------------- recolor

def recolor(image: np.ndarray, mask: np.ndarray, color_rgb: Sequence[int], *,
            feather_px: int | None = None) -> np.ndarray:
    """Give the masked region the colour's hue and chroma, keeping its shading and texture.

    L* carries the texture, a*/b* the colour, so the target's a*/b* replace the pixel's
    and L* stays. A near-neutral target (white, black, grey) has no hue to carry the
    change, so there L* itself moves toward the target's while keeping its local
    variation: "make the shirt white" must actually make it light.
    """
    image, mask, px = _check_inputs(image, mask, feather_px)
    rgb = _check_rgb(color_rgb)
    if not mask.any():
        return image.copy()
    band = feather_band(mask, px)
    lab = _to_lab(image[band])
    target = _to_lab(np.asarray([rgb], dtype=np.uint8))[0]
    lightness = lab[:, 0]
    if _is_neutral(target):
        lightness = _move_lightness(lightness, lightness[mask[band]], float(target[0]))
    recolored = _fit_gamut(lightness, float(target[1]), float(target[2]))
    return _blend(image, band, recolored, feather(mask, px)[band])


def _is_neutral(target_lab: np.ndarray) -> bool:
    chroma = math.hypot(float(target_lab[1]), float(target_lab[2]))
    return chroma < _NEUTRAL_CHROMA or not _DARK_L <= float(target_lab[0]) <= _LIGHT_L


def _move_lightness(lightness: np.ndarray, inside: np.ndarray, target_l: float) -> np.ndarray:
    """Shift L* so the region's mean sits near `target_l`, squeezing the texture only if it must."""
    mean = float(inside.mean())
    low, high = np.percentile(inside - mean, [2, 98])
    spread = float(high - low)
    gain = min(1.0, 90.0 / spread) if spread > 0 else 1.0
    centre = float(np.clip(target_l, -gain * low, 100.0 - gain * high))
    return np.clip(centre + gain * (lightness - mean), 0.0, 100.0)


def _fit_gamut(lightness: np.ndarray, a: float, b: float, steps: int = 12) -> np.ndarray:
    """Lab → RGB float keeping L* and the hue of (a*, b*), with the most chroma sRGB can show.

    Clipping out-of-gamut RGB instead would shift both hue and lightness. With one target
    hue the largest chroma depends on L* alone, so it is found once on a fine L* grid
    (bisection) and looked up per pixel.
    """
    grid = np.linspace(0.0, 100.0, 1001, dtype=np.float32)
    lo, hi = np.zeros_like(grid), np.ones_like(grid)
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = _in_gamut(grid, a * mid, b * mid)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    scale = np.interp(lightness, grid, lo).astype(np.float32)
    return _from_lab(np.stack([lightness, a * scale, b * scale], axis=-1))


def _in_gamut(lightness: np.ndarray, a: np.ndarray, b: np.ndarray, tolerance: float = 0.5) -> np.ndarray:
    """Whether sRGB can show each colour: OpenCV clips on the way to RGB, so a round
    trip that comes back more than `tolerance` ΔE away was clipped."""
    lab = np.stack([lightness, a, b], axis=-1).astype(np.float32)
    back = cv2.cvtColor(_from_lab(lab).reshape(-1, 1, 3), cv2.COLOR_RGB2Lab).reshape(lab.shape)
    return np.linalg.norm(back - lab, axis=-1) <= tolerance


# ---------------------------------------------------------------------------- adjust

def adjust(image: np.ndarray, prop: str, amount: float, mask: np.ndarray | None = None, *,
           feather_px: int | None = None) -> np.ndarray:
    """A tonal change of strength `amount` ∈ [-1, 1]; no mask means the whole image.

    Positive amounts go the way the word says (brighter, more contrast, more saturated,
    sharper, warmer), negative the other way; 0 changes nothing.
    """
    if prop not in ADJUST_PROPERTIES:
        raise UnknownProperty(prop)
    amount = _check_range("amount", amount, -1.0, 1.0)
    if mask is None:
        mask = np.ones(np.asarray(image).shape[:2], dtype=bool)
    image, mask, px = _check_inputs(image, mask, feather_px)
    if amount == 0.0 or not mask.any():
        return image.copy()
    band = feather_band(mask, px)
    alpha = feather(mask, px)[band]
    if prop == "sharpness":
        return _blend(image, band, _sharpen(image, amount)[band], alpha)
    lab = _ADJUSTERS[prop](_to_lab(image[band]), amount, mask[band])
    return _blend(image, band, _from_lab(lab), alpha)


def _brightness(lab: np.ndarray, amount: float, inside: np.ndarray) -> np.ndarray:
    """Move L* a share of the way to white (or black), so nothing clips."""
    lightness = lab[:, 0]
    share = 0.6 * amount
    lab[:, 0] = lightness + share * (100.0 - lightness) if amount > 0 else lightness + share * lightness
    return lab


def _contrast(lab: np.ndarray, amount: float, inside: np.ndarray) -> np.ndarray:
    """Scale L* around the region's mean: -1 flattens it, +1 doubles its spread."""
    mean = float(lab[inside, 0].mean())
    lab[:, 0] = np.clip(mean + (1.0 + amount) * (lab[:, 0] - mean), 0.0, 100.0)
    return lab


def _saturation(lab: np.ndarray, amount: float, inside: np.ndarray) -> np.ndarray:
    """Scale chroma: -1 is greyscale, +1 doubles it."""
    lab[:, 1:] *= 1.0 + amount
    return lab


def _warmth(lab: np.ndarray, amount: float, inside: np.ndarray) -> np.ndarray:
    """Shift toward yellow-orange (+) or blue (−), mostly along b*."""
    lab[:, 2] += 30.0 * amount
    lab[:, 1] += 6.0 * amount
    return lab


_ADJUSTERS = {"brightness": _brightness, "contrast": _contrast,
              "saturation": _saturation, "warmth": _warmth}


def _sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask for +, a blend toward the blurred image for − (−1 = fully blurred)."""
    pixels = image.astype(np.float32) / 255.0
    sigma = max(1.0, 0.003 * max(image.shape[:2]))
    soft = cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    gain = 2.0 * amount if amount > 0 else amount
    return pixels + gain * (pixels - soft)


# ------------------------------------------------------------------------------ blur

def blur(image: np.ndarray, mask: np.ndarray, strength: float, *,
         feather_px: int | None = None) -> np.ndarray:
    """Gaussian blur of the masked region (e.g. background bokeh), radius relative to size.

    Only masked pixels feed the blur (a normalised convolution), so blurring the
    background does not smear the person standing in front of it into a halo.
    """
    strength = _check_range("strength", strength, 0.0, 1.0, low_open=True)
    image, mask, px = _check_inputs(image, mask, feather_px)
    if not mask.any():
        return image.copy()
    sigma = max(1.0, strength * 0.02 * max(image.shape[:2]))
    weight = mask.astype(np.float32)
    pixels = image.astype(np.float32) / 255.0
    numerator = _gaussian(pixels * weight[..., None], sigma)
    denominator = _gaussian(weight, sigma)
    safe = denominator > 1e-3
    fallback = _gaussian(pixels, sigma)
    blurred = np.where(safe[..., None], numerator / np.maximum(denominator, 1e-3)[..., None], fallback)
    band = feather_band(mask, px)
    return _blend(image, band, blurred[band], feather(mask, px)[band])


def _gaussian(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones run on a smaller copy (same look, a fraction of the time)."""
    factor = sigma / 4.0
    if factor <= 2.0:
        return cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    height, width = pixels.shape[:2]
    small = cv2.resize(pixels, (max(1, round(width / factor)), max(1, round(height / factor))),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=4.0, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------- remove

def removal_region(mask: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """The pixels `remove` may change: the mask grown to cover its anti-aliased rim."""
    return dilate(np.asarray(mask, dtype=bool), max(3, feather_for(image_shape)))


def remove(image: np.ndarray, mask: np.ndarray) -> RemoveResult:
    """Erase the masked region and fill it from its surroundings (OpenCV Telea inpainting).

    Good for small things (a blemish, a sign, a bag strap); large areas come out smeared,
    and the notes say so rather than pretend otherwise.
    """
    image, mask, _ = _check_inputs(image, mask, 0)
    if not mask.any():
        return RemoveResult(image.copy(), ["Nothing was selected, so nothing was removed."])
    region = removal_region(mask, image.shape)
    filled = cv2.inpaint(np.ascontiguousarray(image), region.astype(np.uint8) * 255, _INPAINT_RADIUS, cv2.INPAINT_TELEA)
    result = np.where(region[..., None], filled, image)
    notes = []
    share = float(mask.mean())
    if share > LARGE_REMOVAL_SHARE:
        notes.append(
            f"The removed area covers {share:.0%} of the image; classical inpainting smears "
            "areas this large. A generative editor fills them properly: set "
            "CHATEDIT_INPAINT_MODEL to an inpainting model to use one."
        )
    return RemoveResult(result, notes)


# ------------------------------------------------------------------------ plumbing

def _check_inputs(image: np.ndarray, mask: np.ndarray, feather_px: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image H×W×3, got {image.dtype} {image.shape}")
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"the mask is {mask.shape} but the image is {image.shape[:2]}")
    px = feather_for(image.shape) if feather_px is None else feather_px
    if px < 0 or int(px) != px:
        raise OutOfRange("feather_px", px, 0, math.inf)
    return image, mask.astype(bool, copy=False), int(px)


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    below = number <= low if low_open else number < low
    if not math.isfinite(number) or below or number > high:
        raise OutOfRange(name, value, low, high, low_open=low_open)
    return number


def _check_rgb(color: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(color)
    if len(values) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in values):
        raise ValueError(f"a colour is three integers 0–255, got {color!r}")
    return (int(values[0]), int(values[1]), int(values[2]))


def _to_lab(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB pixels (N×3) → float32 CIELAB (L* 0–100)."""
    rgb = pixels.reshape(-1, 1, 3).astype(np.float32) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3)


def _from_lab(lab: np.ndarray) -> np.ndarray:
    """float32 CIELAB (… ×3) → float RGB in 0–1 (OpenCV clips out-of-gamut colours)."""
    shape = lab.shape
    rgb = cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32).reshape(-1, 1, 3), cv2.COLOR_Lab2RGB)
    return rgb.reshape(shape)


def _blend(image: np.ndarray, band: np.ndarray, edited: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Mix the edited band pixels (float RGB 0–1) into a copy of the image by `alpha`.

    Pixels with alpha 0 keep their exact original bytes; the rest are rounded once.
    """
    original = image[band].astype(np.float32)
    edited = np.clip(edited.reshape(-1, 3), 0.0, 1.0) * 255.0
    weight = alpha.reshape(-1, 1).astype(np.float32)
    mixed = np.clip(np.rint(original + weight * (edited - original)), 0, 255).astype(np.uint8)
    out = image.copy()
    out[band] = np.where(weight > 0, mixed, image[band])
    return out
