"""core.images: the longest-side, aspect-ratio and PNG text limits, against the files that broke them.

The hostile files are built here from their recipe: a PNG header of any size with a few
KB of zlib-compressed zero rows, and text chunks that inflate to 100 MB.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import core.images
from core.images import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_SIDE, ImageRejected, load_image
from core.recipes import read_recipe

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def zero_png(width: int, height: int, *, bit_depth: int = 1) -> bytes:
    """A complete, valid greyscale PNG of black rows: any size in a few KB, as a hostile upload would be."""
    row = b"\x00" + b"\x00" * math.ceil(width * bit_depth / 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return PNG_MAGIC + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def with_chunks(png: bytes, *chunks: bytes) -> bytes:
    """The PNG with extra chunks before its image data, where text bombs usually sit."""
    first_idat = png.index(b"IDAT") - 4
    return png[:first_idat] + b"".join(chunks) + png[first_idat:]


def deflated(size: int, byte: bytes = b"a") -> bytes:
    """``size`` bytes of text, compressed without ever holding them whole."""
    compressor = zlib.compressobj(9)
    block = byte * (1 << 20)
    parts = [compressor.compress(block[: min(len(block), size - done)]) for done in range(0, size, len(block))]
    return b"".join(parts) + compressor.flush()


def ztxt(keyword: bytes, compressed: bytes) -> bytes:
    return png_chunk(b"zTXt", keyword + b"\0\0" + compressed)


def itxt(keyword: bytes, text: bytes, *, compressed: bool) -> bytes:
    flag = b"\1\0" if compressed else b"\0\0"
    return png_chunk(b"iTXt", keyword + b"\0" + flag + b"en\0" + keyword + b"\0" + text)


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (30, 60, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The pixel data must never be decompressed: refusals come from the header."""

    def refuse(data: bytes) -> Image.Image:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(core.images, "_decode", refuse)
    yield


def assert_plain_sentence(message: str) -> None:
    assert message[0].isupper() and message.endswith(".")
    assert "\n" not in message and ". " not in message
    for forbidden in ("Traceback", "PIL", "Pillow", "Error", "damaged"):
        assert forbidden not in message, (forbidden, message)


# --- longest side and aspect ratio ---------------------------------------------------


def test_a_39_million_by_1_line_of_a_few_kb_is_refused_from_its_header(no_decoding: None) -> None:
    line = zero_png(39_000_000, 1)
    assert len(line) < 8_000  # within every byte and pixel cap: only its shape gives it away

    with pytest.raises(ImageRejected) as caught:
        load_image(line)

    assert caught.value.reason == "side_too_long"
    assert str(caught.value) == (
        "This image is 39,000,000 × 1 pixels and its longest side is over the 12,000 pixel limit "
        "(CHATEDIT_MAX_IMAGE_SIDE); scale it down and upload it again."
    )
    assert_plain_sentence(str(caught.value))


@pytest.mark.parametrize(("width", "height"), [(12_001, 1_000), (1_000, 12_001)])
def test_a_side_just_over_the_limit_is_refused_either_way_round(width: int, height: int, no_decoding: None) -> None:
    with pytest.raises(ImageRejected) as caught:
        load_image(zero_png(width, height))

    assert caught.value.reason == "side_too_long"
    assert "CHATEDIT_MAX_IMAGE_SIDE" in str(caught.value)


@pytest.mark.parametrize(("width", "height", "ratio"), [(4_200, 200, "21"), (40, 1_000, "25"), (3_000, 1, "3,000")])
def test_an_image_too_far_from_square_is_refused_naming_its_ratio(width: int, height: int, ratio: str,
                                                                  no_decoding: None) -> None:
    with pytest.raises(ImageRejected) as caught:
        load_image(zero_png(width, height))

    assert caught.value.reason == "aspect_ratio"
    assert str(caught.value) == (
        f"This image is {width:,} × {height:,} pixels, an aspect ratio of {ratio}:1, over the 20:1 limit "
        "(CHATEDIT_MAX_ASPECT_RATIO); crop it closer to square and upload it again."
    )
    assert_plain_sentence(str(caught.value))


def test_the_caps_are_the_callers_to_choose(no_decoding: None) -> None:
    with pytest.raises(ImageRejected) as caught:
        load_image(zero_png(600, 400), max_side=500)
    assert "500 pixel limit" in str(caught.value)

    with pytest.raises(ImageRejected) as caught:
        load_image(zero_png(600, 400), max_aspect_ratio=1.25)
    assert "1.25:1 limit" in str(caught.value)


@pytest.mark.parametrize(("width", "height"), [(12_000, 600), (600, 12_000), (4_032, 3_024)])
def test_images_at_the_limits_and_a_12_megapixel_photo_are_accepted(width: int, height: int) -> None:
    loaded = load_image(zero_png(width, height))

    assert (loaded.width, loaded.height) == (width, height)


def test_a_6300_square_png_of_38_kb_is_within_every_cap_and_loads() -> None:
    """Its size is legitimate; what it costs to edit is the edit job's check (core.memory)."""
    buffer = io.BytesIO()
    Image.new("L", (6_300, 6_300)).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert len(data) < 40_000

    loaded = load_image(data)

    assert (loaded.width, loaded.height) == (6_300, 6_300)


def test_the_settings_defaults_are_the_loaders_shape_caps() -> None:
    from core.settings import Settings

    fields = Settings.model_fields
    assert fields["max_image_side"].default == DEFAULT_MAX_SIDE == 12_000
    assert fields["max_aspect_ratio"].default == DEFAULT_MAX_ASPECT_RATIO == 20.0


def test_uploads_through_the_service_use_the_installations_shape_caps(tmp_path) -> None:
    from core.settings import load_settings
    from jobs.images import clean_upload
    from jobs.services import Services

    services = Services.from_settings(load_settings(data_dir=tmp_path, max_image_side=500, max_aspect_ratio=1.25))
    try:
        for data, reason in [(zero_png(600, 500), "side_too_long"), (zero_png(400, 300), "aspect_ratio")]:
            with pytest.raises(ImageRejected) as caught:
                clean_upload(services, data)
            assert caught.value.reason == reason
    finally:
        services.close()


# --- PNG text metadata ---------------------------------------------------------------


HUNDRED_MB = 100 * 1024 * 1024


@pytest.mark.parametrize("kind", ["zTXt", "iTXt"])
def test_a_text_chunk_inflating_to_100_mb_is_refused_as_text_not_as_damage(kind: str) -> None:
    compressed = deflated(HUNDRED_MB)
    chunk = ztxt(b"Comment", compressed) if kind == "zTXt" else itxt(b"Comment", compressed, compressed=True)
    data = with_chunks(small_png(), chunk)
    assert len(data) < 200_000

    with pytest.raises(ImageRejected) as caught:
        load_image(data)

    assert caught.value.reason == "text_too_large"
    assert str(caught.value) == ("This PNG's text metadata is larger than 1 MB in one chunk once uncompressed; "
                                 "save the image without text metadata and upload it again.")
    assert_plain_sentence(str(caught.value))


def test_a_text_bomb_after_the_image_data_is_refused_the_same_way() -> None:
    png = small_png()
    end = png.rindex(b"IEND") - 4
    data = png[:end] + ztxt(b"Comment", deflated(HUNDRED_MB)) + png[end:]

    with pytest.raises(ImageRejected) as caught:
        load_image(data)

    assert caught.value.reason == "text_too_large"


def test_many_text_chunks_over_pillows_total_are_refused_as_text() -> None:
    per_chunk = PngImagePlugin.MAX_TEXT_CHUNK - 1024
    count = PngImagePlugin.MAX_TEXT_MEMORY // per_chunk + 1
    compressed = deflated(per_chunk)
    data = with_chunks(small_png(), *(ztxt(b"Comment%d" % i, compressed) for i in range(count)))

    with pytest.raises(ImageRejected) as caught:
        load_image(data)

    assert caught.value.reason == "text_too_large"
    assert "larger than 64 MB in all" in str(caught.value)


def test_text_under_pillows_limits_is_read_past_and_dropped() -> None:
    """Recipes (a few KB of uncompressed iTXt) and ordinary comments must keep loading."""
    recipe = ('{"commands": [' + ", ".join(['{"command": "adjust", "paras": ["brightness", 0.3, []]}'] * 200) + "]}")
    data = with_chunks(
        small_png(),
        itxt(b"chatedit", recipe.encode(), compressed=False),
        itxt(b"XML:com.adobe.xmp", zlib.compress(b"x" * 500_000), compressed=True),
        ztxt(b"Comment", zlib.compress(b"y" * 500_000)),
        png_chunk(b"tEXt", b"Software\0ChatEdit"),
    )

    loaded = load_image(data)

    assert (loaded.width, loaded.height) == (16, 16)
    assert b"chatedit" not in loaded.png


def test_broken_text_chunks_are_left_to_pillow_as_before() -> None:
    """A text chunk that is not valid zlib is something Pillow skips; it is no reason to refuse."""
    data = with_chunks(small_png(), ztxt(b"Comment", b"not zlib at all"), png_chunk(b"iTXt", b"no separator"))

    assert load_image(data).width == 16


def test_our_own_output_with_a_large_recipe_still_reads_back() -> None:
    from jobs.images import encode_png

    recipe = '{"notes": ["' + "n" * 50_000 + '"]}'
    png = encode_png(np.zeros((8, 8, 3), dtype=np.uint8), text={"chatedit": recipe})

    assert read_recipe(png) == {"notes": ["n" * 50_000]}
    assert load_image(png).width == 8
