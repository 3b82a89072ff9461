"""How much memory an edit needs, known from its image's size and its commands before anything runs.

A 38 KB PNG can hold a 40-megapixel image, so the bytes of an upload say nothing about
what editing it costs; its width and height do. Each command's peak working memory is a
measured multiple of the image's RGB size (3 bytes a pixel) plus a fixed allowance (the
classical editor works in strips and chunks of a fixed size), measured by
``bench/edit_memory.py`` at two image sizes and rounded up. The estimate is what the job
holds throughout (the image, the label map, the person's selection) plus its costliest
phase: one of its commands, or decoding the stored PNG and encoding the result.

The edit service asks before queueing and the worker asks again before it loads the
pixels (the limit may differ between the two processes), so an edit too large for the
machine fails with a sentence instead of taking the worker down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

#: Bytes of one pixel of the RGB images every edit works on.
RGB_BYTES_PER_PIXEL = 3
_MB = 1024 * 1024


@dataclass(frozen=True)
class Footprint:
    """Peak memory of one phase: ``multiple`` × the image's RGB size, plus ``fixed_mb``."""

    multiple: float
    fixed_mb: float = 0.0

    def mb(self, rgb_mb: float) -> float:
        return self.multiple * rgb_mb + self.fixed_mb


#: Each command's working memory beyond what the job holds (bench/edit_memory.py, rounded up): about one
#: copy of the image (its output) plus strips of a fixed size. ``adjust`` is its costliest property,
#: sharpness on the whole image, whose strips overlap by its blur's reach (which grows with the longest
#: side, so a long thin image costs it more); ``blur`` is a background. ``remove`` inpaints the region's
#: bounding box, so a region as large as the image costs what inpainting the whole image does.
COMMAND_FOOTPRINTS: dict[str, Footprint] = {
    "recolor": Footprint(1.25, 60.0),
    "adjust": Footprint(2.5, 100.0),
    "blur": Footprint(1.75, 110.0),
    "remove": Footprint(4.5, 50.0),
}
#: A generative command's work at full size (the model's own memory is its device's and is not counted
#: here): resizing its output back and compositing it over the feathered mask, in float32.
GENERATIVE_FOOTPRINT = Footprint(14.5, 10.0)
#: Held through every command: the image, the segmentation's label map and the person's selection.
HELD = Footprint(1.7)
#: Decoding the stored PNG into pixels (Pillow keeps 4 bytes a pixel) and encoding the result with its recipe.
LOAD_AND_STORE = Footprint(6.0, 20.0)


class TooMuchMemory(ValueError):
    """An edit whose estimated memory is over the configured limit; the message names the setting."""

    def __init__(self, needed_mb: int, limit_mb: int, width: int, height: int) -> None:
        self.needed_mb, self.limit_mb, self.width, self.height = needed_mb, limit_mb, width, height
        super().__init__(f"This edit would need about {needed_mb:,} MB for a {width}×{height} image; "
                         f"the limit is {limit_mb:,} MB (CHATEDIT_MAX_JOB_MEMORY_MB).")


def footprint(command: str) -> Footprint:
    """A command's working memory; any command without a classical footprint counts as generative."""
    return COMMAND_FOOTPRINTS.get(command, GENERATIVE_FOOTPRINT)


def estimated_memory_mb(width: int, height: int, commands: Iterable[str]) -> int:
    """Peak memory of an edit running ``commands`` (names) on a ``width`` × ``height`` image, in MB, rounded up.

    Commands run one after another, each on the previous one's output, so the peak is the
    costliest command's, not their sum.
    """
    if width < 1 or height < 1:
        raise ValueError(f"an image is at least 1×1 pixels, got {width}×{height}")
    rgb_mb = width * height * RGB_BYTES_PER_PIXEL / _MB
    working = max((footprint(name).mb(rgb_mb) for name in commands), default=0.0)
    return math.ceil(HELD.mb(rgb_mb) + max(working, LOAD_AND_STORE.mb(rgb_mb)))


def check_memory(width: int, height: int, commands: Iterable[str], limit_mb: int) -> int:
    """The estimate, or :class:`TooMuchMemory` when it is over ``limit_mb``."""
    needed = estimated_memory_mb(width, height, commands)
    if needed > limit_mb:
        raise TooMuchMemory(needed, limit_mb, width, height)
    return needed
