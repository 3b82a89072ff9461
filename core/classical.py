"""Exact CPU edits: recolor, adjust, blur and remove (OpenCV inpainting).

These are the offline editor: they run with no GPU and no model, and they are exact in
one sense that matters to the person: every operation changes only its mask and a thin
feathered band around it (`core.masks.feather_band`); every other pixel comes back
bit-identical. Colour work happens in CIELAB so "brighter" and "bluer" mean what a
person sees, not what one RGB channel does.

Images are RGB uint8 arrays H×W×3, masks boolean H×W; every function returns a new array.

Memory: besides that new array, every edit works in strips of rows inside the mask's
bounding box (`_strips`), each a fixed number of pixels, and converts colours in chunks
of a fixed size, so its float copies do not grow with the image; a large photo costs
about one more copy of itself, not dozens (`core.memory` holds the measured multiples).
The strips overlap by the reach of each neighbourhood operation (feather, unsharp mask,
blur), so cutting the image into strips changes no pixel.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
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
#: Pixels in one strip of rows: feathering and neighbourhood work happen a strip at a time.
_STRIP_PIXELS = 1 << 20
#: Pixels converted to CIELAB and blended at once.
_CHUNK_PIXELS = 1 << 18


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
    target = _to_lab(np.asarray([rgb], dtype=np.uint8))[0]
    a, b = float(target[1]), float(target[2])
    move = _lightness_move(_inside_lightness(image, mask), float(target[0])) if _is_neutral(target) else None
    grid, scale = _gamut_scale(a, b)

    def convert(pixels: np.ndarray) -> np.ndarray:
        lightness = _to_lab(pixels)[:, 0]
        if move is not None:
            lightness = move(lightness)
        return _fit_gamut(lightness, a, b, grid, scale)

    return _edit_band(image, mask, px, _pointwise(image, convert))


def _is_neutral(target_lab: np.ndarray) -> bool:
    chroma = math.hypot(float(target_lab[1]), float(target_lab[2]))
    return chroma < _NEUTRAL_CHROMA or not _DARK_L <= float(target_lab[0]) <= _LIGHT_L


def _lightness_move(inside: np.ndarray, target_l: float) -> Callable[[np.ndarray], np.ndarray]:
    """Shift L* so the region's mean sits near `target_l`, squeezing the texture only if it must.

    ``inside`` is the region's L* (float32, reordered in place); what comes back maps any L*.
    """
    mean = float(inside.mean())
    low, high = (value - mean for value in _percentiles(inside, (2, 98)))
    spread = float(high - low)
    gain = min(1.0, 90.0 / spread) if spread > 0 else 1.0
    centre = float(np.clip(target_l, -gain * low, 100.0 - gain * high))
    return lambda lightness: np.clip(centre + gain * (lightness - mean), 0.0, 100.0)


def _percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    """numpy's default (linear) percentiles, partitioning ``values`` in place instead of copying them."""
    last = values.size - 1
    positions = [q / 100.0 * last for q in qs]
    kth = sorted({min(last, i) for p in positions for i in (math.floor(p), math.floor(p) + 1)})
    values.partition(kth)
    result = []
    for position in positions:
        below = math.floor(position)
        low, high = float(values[below]), float(values[min(last, below + 1)])
        result.append(low + (position - below) * (high - low))
    return result


def _gamut_scale(a: float, b: float, steps: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """For each L* on a fine grid, the share of (a*, b*) that sRGB can show (bisection).

    With one target hue the largest chroma depends on L* alone, so it is found once and
    looked up per pixel.
    """
    grid = np.linspace(0.0, 100.0, 1001, dtype=np.float32)
    lo, hi = np.zeros_like(grid), np.ones_like(grid)
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = _in_gamut(grid, a * mid, b * mid)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return grid, lo


def _fit_gamut(lightness: np.ndarray, a: float, b: float, grid: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Lab → RGB float keeping L* and the hue of (a*, b*), with the most chroma sRGB can show.

    Clipping out-of-gamut RGB instead would shift both hue and lightness.
    """
    scale = np.interp(lightness, grid, share).astype(np.float32)
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
    if prop == "sharpness":
        return _edit_band(image, mask, px, _sharpener(image, amount))
    adjuster = _ADJUSTERS[prop]
    mean = _mean(_inside_lightness(image, mask)) if prop == "contrast" else 0.0

    def convert(pixels: np.ndarray) -> np.ndarray:
        return _from_lab(adjuster(_to_lab(pixels), amount, mean))

    return _edit_band(image, mask, px, _pointwise(image, convert))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def _brightness(lab: np.ndarray, amount: float, mean: float) -> np.ndarray:
    """Move L* a share of the way to white (or black), so nothing clips."""
    lightness = lab[:, 0]
    share = 0.6 * amount
    lab[:, 0] = lightness + share * (100.0 - lightness) if amount > 0 else lightness + share * lightness
    return lab


def _contrast(lab: np.ndarray, amount: float, mean: float) -> np.ndarray:
    """Scale L* around the region's mean: -1 flattens it, +1 doubles its spread."""
    lab[:, 0] = np.clip(mean + (1.0 + amount) * (lab[:, 0] - mean), 0.0, 100.0)
    return lab


def _saturation(lab: np.ndarray, amount: float, mean: float) -> np.ndarray:
    """Scale chroma: -1 is greyscale, +1 doubles it."""
    lab[:, 1:] *= 1.0 + amount
    return lab


def _warmth(lab: np.ndarray, amount: float, mean: float) -> np.ndarray:
    """Shift toward yellow-orange (+) or blue (−), mostly along b*."""
    lab[:, 2] += 30.0 * amount
    lab[:, 1] += 6.0 * amount
    return lab


_ADJUSTERS = {"brightness": _brightness, "contrast": _contrast,
              "saturation": _saturation, "warmth": _warmth}


def _sharpener(image: np.ndarray, amount: float) -> _StripEdit:
    """Unsharp mask for +, a blend toward the blurred image for − (−1 = fully blurred)."""
    sigma = max(1.0, 0.003 * max(image.shape[:2]))
    size = _gaussian_size(sigma)
    gain = 2.0 * amount if amount > 0 else amount

    def edit(strip: _Strip) -> np.ndarray:
        rows, inner = _with_margin(strip.rows, size // 2 + 1, image.shape[0])
        pixels = image[rows].astype(np.float32)
        pixels /= 255.0
        soft = cv2.GaussianBlur(pixels, (size, size), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
        pixels, soft = pixels[inner, strip.cols], soft[inner, strip.cols]
        soft -= pixels
        soft *= -gain
        soft += pixels
        return soft[strip.band]

    return edit


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
    factor = sigma / 4.0
    sampler = _blur_full_size(image, mask, sigma) if factor <= 2.0 else _blur_downsampled(image, mask, factor)
    return _edit_band(image, mask, px, sampler)


#: The blur's three planes side by side: the masked pixels (3), the mask (1), all pixels (3).
_PLANES = 7


def _blur_planes(image: np.ndarray, mask: np.ndarray, rows: slice) -> np.ndarray:
    """Rows of [pixels × mask, mask, pixels] as float32 (…×7): what the normalised convolution blurs."""
    pixels = image[rows].astype(np.float32)
    pixels /= 255.0
    planes = np.empty(pixels.shape[:2] + (_PLANES,), dtype=np.float32)
    planes[..., 3] = mask[rows]
    np.multiply(pixels, planes[..., 3:4], out=planes[..., :3])
    planes[..., 4:] = pixels
    return planes


def _normalised(planes: np.ndarray, cols: slice, band: np.ndarray) -> np.ndarray:
    """Blurred masked pixels over blurred mask (the plain blur where the mask is too far away), at the band.

    ``planes`` are blurred planes of whole image rows; they are overwritten.
    """
    numerator, denominator, fallback = planes[..., :3], planes[..., 3:4], planes[..., 4:]
    numerator /= np.maximum(denominator, 1e-3)
    np.copyto(numerator, fallback, where=denominator <= 1e-3)
    return numerator[:, cols][band]


def _blur_full_size(image: np.ndarray, mask: np.ndarray, sigma: float) -> _StripEdit:
    """A narrow blur, computed a strip at a time with enough rows around it to be exact."""
    size = _gaussian_size(sigma)

    def edit(strip: _Strip) -> np.ndarray:
        rows, inner = _with_margin(strip.rows, size // 2 + 1, image.shape[0])
        planes = _blur_planes(image, mask, rows)
        blurred = np.empty_like(planes)
        for first, last in ((0, 4), (4, _PLANES)):  # OpenCV filters at most four channels at once
            blurred[..., first:last] = cv2.GaussianBlur(np.ascontiguousarray(planes[..., first:last]), (size, size),
                                                        sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
        return _normalised(blurred[inner], strip.cols, strip.band)

    return edit


def _blur_downsampled(image: np.ndarray, mask: np.ndarray, factor: float) -> _StripEdit:
    """A wide blur runs on a copy ``factor`` times smaller (same look, a fraction of the time and memory).

    The copy is the image shrunk by area averaging and blurred; each strip is then read
    back at full size by bilinear interpolation. Both are separable, so both are done a
    strip of rows at a time: OpenCV for the columns, the row weights here.
    """
    height, width = image.shape[:2]
    small_w, small_h = max(1, round(width / factor)), max(1, round(height / factor))
    small = np.zeros((small_h, small_w, _PLANES), dtype=np.float32)
    targets, sources, weights = _area_weights(height, small_h)
    step = max(1, _STRIP_PIXELS // (width * 4))
    for top in range(0, height, step):
        rows = slice(top, min(height, top + step))
        narrow = _resize(_blur_planes(image, mask, rows), small_w, rows.stop - rows.start, cv2.INTER_AREA)
        chosen = (sources >= rows.start) & (sources < rows.stop)
        contributions = narrow[sources[chosen] - rows.start] * weights[chosen, None, None]
        firsts = np.flatnonzero(np.r_[True, np.diff(targets[chosen]) != 0])
        small[targets[chosen][firsts]] += np.add.reduceat(contributions, firsts, axis=0)
    blurred = np.empty_like(small)
    for first, last in ((0, 4), (4, _PLANES)):
        blurred[..., first:last] = cv2.GaussianBlur(np.ascontiguousarray(small[..., first:last]), (0, 0),
                                                    sigmaX=4.0, borderType=cv2.BORDER_REFLECT)

    def rows_at_full_size(rows: slice) -> np.ndarray:
        y = ((np.arange(rows.start, rows.stop) + 0.5) * (small_h / height) - 0.5).astype(np.float32)
        below = np.floor(y)
        share = (y - below)[:, None, None]
        below = below.astype(np.intp)
        upper = blurred[np.clip(below, 0, small_h - 1)]
        lower = blurred[np.clip(below + 1, 0, small_h - 1)]
        lower -= upper
        lower *= share
        upper += lower
        return _resize(upper, width, rows.stop - rows.start, cv2.INTER_LINEAR)

    def edit(strip: _Strip) -> np.ndarray:
        # A strip may be taller than _STRIP_PIXELS allows (it is at least a few feathers tall), and
        # seven float planes of it at full width would be the largest copy of all: read it in parts.
        edited = np.empty((int(np.count_nonzero(strip.band)), 3), dtype=np.float32)
        filled = 0
        step = max(1, _STRIP_PIXELS // width)
        for top in range(strip.rows.start, strip.rows.stop, step):
            rows = slice(top, min(strip.rows.stop, top + step))
            band = strip.band[rows.start - strip.rows.start:rows.stop - strip.rows.start]
            part = _normalised(rows_at_full_size(rows), strip.cols, band)
            edited[filled:filled + len(part)] = part
            filled += len(part)
        return edited

    return edit


def _resize(planes: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    """cv2.resize for any number of planes (it takes at most four at once)."""
    out = np.empty((height, width, planes.shape[2]), dtype=np.float32)
    for first in range(0, planes.shape[2], 4):
        last = min(planes.shape[2], first + 4)
        out[..., first:last] = cv2.resize(np.ascontiguousarray(planes[..., first:last]), (width, height),
                                          interpolation=interpolation).reshape(height, width, last - first)
    return out


def _area_weights(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target row, source row, weight) of an area-averaging shrink from ``source`` rows to ``target``.

    The weights are OpenCV's own (``INTER_AREA``), sorted by target row, so shrinking
    the rows here and the columns with cv2.resize gives what one cv2.resize would.
    """
    scale = source / target
    targets: list[int] = []
    sources: list[int] = []
    weights: list[float] = []
    for d in range(target):
        start, end = d * scale, d * scale + scale
        cell = min(scale, source - start)
        last = min(math.floor(end), source - 1)
        first = min(math.ceil(start), last)
        if first - start > 1e-3:
            targets.append(d), sources.append(first - 1), weights.append((first - start) / cell)
        for s in range(first, last):
            targets.append(d), sources.append(s), weights.append(1.0 / cell)
        if end - last > 1e-3:
            targets.append(d), sources.append(last), weights.append(min(end - last, 1.0, cell) / cell)
    return np.asarray(targets), np.asarray(sources), np.asarray(weights, dtype=np.float32)


def _gaussian_size(sigma: float) -> int:
    """The kernel size OpenCV picks for a float image given only sigma, made explicit so strips can overlap by it."""
    return int(round(sigma * 4 * 2 + 1)) | 1


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
    # Telea reads known pixels a few radii around the region, and nothing farther: inpainting
    # a crop with that margin gives the same pixels as inpainting the whole image.
    grow = max(3, feather_for(image.shape))
    rows, cols = _bounding_box(mask, grow + 4 * _INPAINT_RADIUS + 4)
    region = dilate(mask[rows, cols], grow)
    crop = np.ascontiguousarray(image[rows, cols])
    filled = cv2.inpaint(crop, region.astype(np.uint8) * 255, _INPAINT_RADIUS, cv2.INPAINT_TELEA)
    result = image.copy()
    result[rows, cols][region] = filled[region]
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


def _mix(pixels: np.ndarray, edited: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Mix edited band pixels (float RGB 0–1) into the original ones (uint8) by `alpha`.

    Pixels with alpha 0 keep their exact original bytes; the rest are rounded once.
    """
    original = pixels.astype(np.float32)
    edited = np.clip(edited.reshape(-1, 3), 0.0, 1.0) * 255.0
    weight = alpha.reshape(-1, 1).astype(np.float32)
    mixed = np.clip(np.rint(original + weight * (edited - original)), 0, 255).astype(np.uint8)
    return np.where(weight > 0, mixed, pixels)


@dataclass(frozen=True)
class _Strip:
    """Rows of the image an edit handles at once, within the columns its band can reach."""

    rows: slice
    cols: slice
    #: The strip's pixels the edit may change (its part of `feather_band`).
    band: np.ndarray
    #: `feather` of the mask at those pixels, in band order.
    alpha: np.ndarray


#: Edited float RGB (0–1) of a strip's band pixels, in band order.
_StripEdit = Callable[[_Strip], np.ndarray]


def _edit_band(image: np.ndarray, mask: np.ndarray, px: int, edit: _StripEdit) -> np.ndarray:
    """A copy of the image with `edit` blended in over the feathered mask, a strip and a chunk at a time."""
    out = image.copy()
    for strip in _strips(mask, px):
        edited = edit(strip)
        window = out[strip.rows, strip.cols]
        pixels = window[strip.band]
        for part in _chunks(len(pixels)):
            pixels[part] = _mix(pixels[part], edited[part], strip.alpha[part])
        window[strip.band] = pixels
    return out


def _pointwise(image: np.ndarray, convert: Callable[[np.ndarray], np.ndarray]) -> _StripEdit:
    """A strip edit from a per-pixel colour change (uint8 RGB N×3 → float RGB 0–1), run a chunk at a time."""

    def edit(strip: _Strip) -> np.ndarray:
        pixels = image[strip.rows, strip.cols][strip.band]
        edited = np.empty(pixels.shape, dtype=np.float32)
        for part in _chunks(len(pixels)):
            edited[part] = convert(pixels[part]).reshape(-1, 3)
        return edited

    return edit


def _chunks(count: int) -> Iterator[slice]:
    for start in range(0, count, _CHUNK_PIXELS):
        yield slice(start, min(count, start + _CHUNK_PIXELS))


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The rows and columns holding the mask, grown by `margin` and kept inside the image."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (slice(max(0, rows[0] - margin), min(height, rows[-1] + 1 + margin)),
            slice(max(0, cols[0] - margin), min(width, cols[-1] + 1 + margin)))


def _with_margin(rows: slice, margin: int, height: int) -> tuple[slice, slice]:
    """``rows`` grown by ``margin`` (inside the image), and where the original rows sit within them."""
    start, stop = max(0, rows.start - margin), min(height, rows.stop + margin)
    return slice(start, stop), slice(rows.start - start, rows.stop - start)


def _strips(mask: np.ndarray, px: int) -> Iterator[_Strip]:
    """The feather band and its alpha, a strip of rows at a time, within the mask's bounding box.

    `feather` and `feather_band` reach `px` pixels, so each strip's mask is read with
    `px + 1` rows around it: the alpha inside the strip is exactly the whole image's. Past
    the bounding box the mask is empty, so cropping there changes nothing either.
    """
    rows, cols = _bounding_box(mask, px + 1)
    width = cols.stop - cols.start
    step = max(4 * (px + 1), _STRIP_PIXELS // max(1, width))
    for top in range(rows.start, rows.stop, step):
        strip_rows = slice(top, min(rows.stop, top + step))
        context, inner = _with_margin(strip_rows, px + 1, mask.shape[0])
        local = mask[context, cols]
        if not local.any():
            continue
        if local.all():
            band = np.ones((strip_rows.stop - strip_rows.start, width), dtype=bool)
            yield _Strip(strip_rows, cols, band, np.ones(band.size, dtype=np.float32))
            continue
        band = feather_band(local, px)[inner]
        if band.any():
            yield _Strip(strip_rows, cols, band, feather(local, px)[inner][band])


def _inside_lightness(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """L* (float32) of every masked pixel, converted a chunk at a time."""
    values = np.empty(int(np.count_nonzero(mask)), dtype=np.float32)
    filled = 0
    step = max(1, _STRIP_PIXELS // image.shape[1])
    for top in range(0, image.shape[0], step):
        pixels = image[top:top + step][mask[top:top + step]]
        for part in _chunks(len(pixels)):
            lightness = _to_lab(pixels[part])[:, 0]
            values[filled:filled + lightness.size] = lightness
            filled += lightness.size
    return values
