"""An upload with transparent pixels is accepted, flattened onto white, and says so; an opaque alpha channel is not
transparency."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.images import load_image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _palette_with_transparent_index() -> Image.Image:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize("image", [Image.new("RGBA", (8, 8), (255, 0, 0, 0)), Image.new("LA", (8, 8), (90, 0)),
                                   _palette_with_transparent_index()], ids=["RGBA", "LA", "P"])
def test_transparent_pixels_are_flattened_onto_white_and_reported(image: Image.Image) -> None:
    loaded = load_image(_png(image))
    assert loaded.flattened
    assert np.asarray(loaded.to_pil()).reshape(-1, 3).max(axis=0).tolist() == [255, 255, 255]


@pytest.mark.parametrize("image", [Image.new("RGBA", (8, 8), (255, 0, 0, 255)), Image.new("RGB", (8, 8))],
                         ids=["opaque RGBA", "RGB"])
def test_an_opaque_image_is_not_reported(image: Image.Image) -> None:
    assert not load_image(_png(image)).flattened
