"""Classical edits have soft edges: across a hard-edged mask's border the edit fades in over several pixels.

The picture changes only from row to row (horizontal stripes) and the mask is the left part
of the picture, cut straight down. Along any row, then, the untouched value is one number and
the fully edited value (deep inside the mask) is another; a hard cut jumps from one to the
other between two neighbouring pixels, a feathered edge passes through values in between.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.classical import ADJUST_PROPERTIES, adjust, blur, recolor

H, W = 48, 120
EDGE_X = 60  # the mask is x < EDGE_X
PX = 4

Edit = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
EDITS: dict[str, Edit] = {
    "recolor blue": lambda img, m, px: recolor(img, m, (0, 0, 255), feather_px=px),
    "recolor white": lambda img, m, px: recolor(img, m, (255, 255, 255), feather_px=px),
    **{f"adjust {p} {a:+}": (lambda img, m, px, p=p, a=a: adjust(img, p, a, m, feather_px=px))
       for p in ADJUST_PROPERTIES for a in (-0.6, 0.6)},
    "blur": lambda img, m, px: blur(img, m, 0.5, feather_px=px),
}


@pytest.fixture(scope="module")
def stripes() -> np.ndarray:
    """Horizontal stripes of a moderate colour: every row is one colour, rows differ."""
    rows = np.arange(H, dtype=np.float32)[:, None]
    colour = np.concatenate([130 + 60 * np.sin(rows / 2.0), 110 + 40 * np.cos(rows / 3.0),
                             90 + 30 * np.sin(rows / 5.0 + 1.0)], axis=1)
    return np.repeat(np.clip(colour, 0, 255).astype(np.uint8)[:, None, :], W, axis=1)


@pytest.fixture(scope="module")
def left_part() -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[:, :EDGE_X] = True
    return mask


def _transition(before: np.ndarray, after: np.ndarray) -> tuple[int, int]:
    """For the row and channel the edit moves most: (pixels strictly between untouched and
    fully edited, the size of the move)."""
    untouched = before[:, EDGE_X + 3 * PX].astype(int)  # far right of the edge: not edited
    edited = after[:, EDGE_X - 3 * PX].astype(int)  # far left: fully edited (the rows are uniform)
    move = np.abs(edited - untouched)
    row, channel = np.unravel_index(int(np.argmax(move)), move.shape)
    line = after[row, :, channel].astype(int)
    low, high = sorted((int(untouched[row, channel]), int(edited[row, channel])))
    return int(((line > low) & (line < high)).sum()), int(move[row, channel])


@pytest.mark.parametrize("name", list(EDITS))
def test_the_edit_fades_in_across_the_masks_edge(name: str, stripes: np.ndarray, left_part: np.ndarray) -> None:
    after = EDITS[name](stripes, left_part, PX)
    between, move = _transition(stripes, after)
    assert move >= 6, "the edit is strong enough for its edge to show"
    assert between >= 2, f"the edge is a hard cut: {between} pixel(s) between untouched and fully edited"
    assert between <= 2 * PX + 2, "the fade is no wider than the feather"


@pytest.mark.parametrize("name", ["recolor blue", "adjust brightness +0.6", "blur"])
def test_without_a_feather_the_edge_is_hard(name: str, stripes: np.ndarray, left_part: np.ndarray) -> None:
    """The measure itself: with ``feather_px=0`` it finds no pixel in between."""
    between, move = _transition(stripes, EDITS[name](stripes, left_part, 0))
    assert move >= 6 and between == 0
