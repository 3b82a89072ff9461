"""core.images: what it accepts, what comes out, and how every refusal reads to a person.

Every image is built here with Pillow and numpy; nothing is downloaded or committed.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, PngImagePlugin

from core.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageRejected,
    LoadedImage,
    load_image,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- builders ------------------------------------------------------------------------


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Random pixels: incompressible, so truncating the file really cuts pixel data."""
    channels = len(mode)
    array = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode=mode)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming any size, with one tiny IDAT: a bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return PNG_MAGIC + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def exif_bytes(**tags: object) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[{"orientation": 0x0112, "make": 0x010F, "artist": 0x013B}[tag]] = value
    return exif.tobytes()


def pixels(loaded: LoadedImage) -> np.ndarray:
    return np.asarray(loaded.to_pil())


# --- accepted formats ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params", "expected_format"),
    [
        ("PNG", {}, "PNG"),
        ("JPEG", {"quality": 95}, "JPEG"),
        ("WEBP", {"lossless": True}, "WEBP"),
        ("BMP", {}, "BMP"),
        ("TIFF", {}, "TIFF"),
        ("TIFF", {"compression": "tiff_lzw"}, "TIFF"),
    ],
)
def test_accepted_formats_come_out_as_rgb_png_of_the_same_size(fmt: str, params: dict, expected_format: str) -> None:
    data = encode(noise(64, 48), fmt, **params)

    loaded = load_image(data)

    assert loaded.source_format == expected_format
    assert (loaded.width, loaded.height) == (64, 48)
    assert loaded.png.startswith(PNG_MAGIC)
    image = loaded.to_pil()
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 48))
    assert len(loaded.sha256) == 64 and int(loaded.sha256, 16) >= 0


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_keep_the_pixels_exactly(fmt: str) -> None:
    source = noise(32, 20, seed=3)

    assert np.array_equal(pixels(load_image(encode(source, fmt))), np.asarray(source))


def test_a_multi_picture_jpeg_from_a_phone_is_accepted_as_its_first_picture() -> None:
    first, second = noise(40, 30, seed=1), noise(20, 10, seed=2)
    data = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    loaded = load_image(data)

    assert (loaded.source_format, loaded.width, loaded.height) == ("JPEG", 40, 30)


# --- hashing -------------------------------------------------------------------------


def test_the_same_pixels_give_the_same_sha256_whatever_the_metadata() -> None:
    source = noise(50, 40, seed=7)
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Someone Private")
    text.add_text("Comment", "taken at home")

    plain = load_image(encode(source, "PNG"))
    with_metadata = load_image(encode(source, "PNG", pnginfo=text, exif=exif_bytes(make="Cam", artist="Me"), dpi=(300, 300)))
    as_bmp = load_image(encode(source, "BMP"))
    as_tiff = load_image(encode(source, "TIFF", compression="tiff_deflate"))

    assert plain.sha256 == with_metadata.sha256 == as_bmp.sha256 == as_tiff.sha256
    assert plain.png == with_metadata.png


def test_different_pixels_give_a_different_sha256() -> None:
    assert load_image(encode(noise(16, 16, seed=1), "PNG")).sha256 != load_image(encode(noise(16, 16, seed=2), "PNG")).sha256


def test_sha256_is_the_hash_of_the_png_bytes() -> None:
    import hashlib

    loaded = load_image(encode(noise(8, 8), "PNG"))

    assert loaded.sha256 == hashlib.sha256(loaded.png).hexdigest()


def test_loaded_image_is_frozen_and_its_repr_leaves_out_the_bytes() -> None:
    loaded = load_image(encode(noise(8, 8), "PNG"))

    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.width = 1  # type: ignore[misc]
    assert "png=" not in repr(loaded) and loaded.sha256 in repr(loaded)


# --- normalisation -------------------------------------------------------------------


def _landscape_with_red_corner() -> Image.Image:
    """60 wide, 40 high, grey, with a red 12x12 block in the stored top-left corner."""
    image = Image.new("RGB", (60, 40), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, 12, 12))
    return image


def _is_red(block: np.ndarray) -> bool:
    red, green, blue = block.reshape(-1, 3).mean(axis=0)
    return red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize(
    ("orientation", "corner"),
    [
        (6, "top_right"),  # stored image is shown rotated 90° clockwise
        (8, "bottom_left"),  # stored image is shown rotated 90° counter-clockwise
    ],
)
def test_an_exif_rotated_jpeg_is_loaded_upright(orientation: int, corner: str) -> None:
    data = encode(_landscape_with_red_corner(), "JPEG", quality=95, exif=exif_bytes(orientation=orientation))

    loaded = load_image(data)

    assert (loaded.width, loaded.height) == (40, 60)
    array = pixels(loaded)
    corners = {
        "top_left": array[2:8, 2:8],
        "top_right": array[2:8, -8:-2],
        "bottom_left": array[-8:-2, 2:8],
        "bottom_right": array[-8:-2, -8:-2],
    }
    assert [name for name, block in corners.items() if _is_red(block)] == [corner]
    assert not loaded.to_pil().getexif()


def test_transparent_pixels_become_white_and_partial_alpha_is_blended_on_white() -> None:
    array = np.zeros((10, 10, 4), dtype=np.uint8)
    array[:, :5] = (255, 0, 0, 0)  # fully transparent red: must not show as red or black
    array[:, 5:] = (0, 0, 0, 128)  # half-transparent black: mid grey on white
    loaded = load_image(encode(Image.fromarray(array, "RGBA"), "PNG"))

    out = pixels(loaded)

    assert loaded.to_pil().mode == "RGB"
    assert (out[:, :5] == 255).all()
    assert np.abs(out[:, 5:].astype(int) - 127).max() <= 1


def test_a_palette_image_with_a_transparent_index_becomes_white_there() -> None:
    image = Image.new("P", (6, 6), 1)
    image.putpalette([0, 255, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    image.paste(0, (0, 0, 3, 6))
    data = encode(image, "PNG", transparency=0)

    out = pixels(load_image(data))

    assert (out[:, :3] == 255).all()
    assert (out[:, 3:] == (0, 0, 255)).all()


def test_grey_with_alpha_is_flattened_on_white() -> None:
    image = Image.new("LA", (4, 4), (0, 0))

    assert (pixels(load_image(encode(image, "PNG"))) == 255).all()


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped() -> None:
    array = np.array([[0, 32896, 65535]], dtype=np.uint16).repeat(3, axis=0)
    data = encode(Image.fromarray(array), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")

    out = pixels(load_image(data))

    assert out.shape == (3, 3, 3)
    assert list(out[0, :, 0]) == [0, 128, 255]


@pytest.mark.parametrize("mode", ["L", "CMYK", "1"])
def test_other_modes_become_8_bit_rgb(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    loaded = load_image(encode(Image.new(mode, (8, 6)), fmt))

    assert loaded.to_pil().mode == "RGB" and (loaded.width, loaded.height) == (8, 6)


def test_the_output_png_carries_no_exif_text_icc_or_dpi() -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Someone Private")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = exif_bytes(make="Cam", artist="Someone Private")
    sources = [
        encode(noise(20, 20), "JPEG", exif=exif, icc_profile=icc, dpi=(72, 72), comment=b"private"),
        encode(noise(20, 20), "PNG", pnginfo=text, exif=exif, icc_profile=icc, dpi=(300, 300)),
        encode(noise(20, 20), "WEBP", exif=exif, icc_profile=icc),
        encode(noise(20, 20), "TIFF", exif=exif, icc_profile=icc),
    ]
    for data in sources:
        loaded = load_image(data)
        image = loaded.to_pil()
        assert image.info == {}, image.info
        assert not image.getexif()
        assert image.text == {}  # type: ignore[attr-defined]
        chunks = _png_chunk_types(loaded.png)
        assert chunks == ["IHDR", *["IDAT"] * (len(chunks) - 2), "IEND"]
        assert b"Someone Private" not in loaded.png


def _png_chunk_types(png: bytes) -> list[str]:
    types, offset = [], len(PNG_MAGIC)
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        types.append(png[offset + 4 : offset + 8].decode("ascii"))
        offset += 12 + length
    return types


# --- refusals ------------------------------------------------------------------------


def _tiff_pages(pages: int) -> bytes:
    images = [noise(10, 10, seed=i) for i in range(pages)]
    return encode(images[0], "TIFF", save_all=True, append_images=images[1:])


def _animated(fmt: str, frames: int) -> bytes:
    """Frames must differ, or Pillow merges them into one."""
    images = [noise(10, 10, seed=i) for i in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=100)


def _truncated(fmt: str) -> bytes:
    data = encode(noise(200, 200), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return data[: len(data) // 2]


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'

REFUSALS: list[tuple[str, bytes, dict, str, str]] = [
    # (id, data, load_image kwargs, reason, a phrase the message must contain)
    ("empty", b"", {}, "empty", "empty"),
    ("over the byte cap", b"\x00" * 2049, {"max_bytes": 2048}, "too_large", "limit"),
    ("random bytes", np.random.default_rng(5).bytes(4096), {}, "unsupported_format", "PNG, JPEG, WebP, BMP or TIFF"),
    ("plain text", b"hello, this is not an image\n", {}, "unsupported_format", "PNG, JPEG, WebP, BMP or TIFF"),
    ("svg", SVG, {}, "svg", "SVG"),
    ("svg with xml declaration", b'<?xml version="1.0"?>\n' + SVG, {}, "svg", "SVG"),
    ("svg with bom and space", b"\xef\xbb\xbf  \n\t" + SVG, {}, "svg", "SVG"),
    ("svg after a doctype", b'<!DOCTYPE html>\n<!-- drawing -->\n' + SVG, {}, "svg", "SVG"),
    ("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", {}, "eps", "EPS"),
    ("dos eps", b"\xc5\xd0\xd3\xc6" + b"\x00" * 64, {}, "eps", "EPS"),
    ("psd", b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 10, 10, 8, 3), {}, "psd", "PSD"),
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", {}, "unsupported_format", "PDF"),
    ("heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", {}, "unsupported_format", "HEIC"),
    ("single gif", encode(noise(10, 10), "GIF"), {}, "gif", "GIF"),
    ("animated gif", _animated("GIF", 3), {}, "gif", "3 frames"),
    ("multi-page tiff", _tiff_pages(3), {}, "multi_frame", "This TIFF has 3 pages; upload a single image."),
    ("animated webp", _animated("WEBP", 3), {}, "multi_frame", "3 frames"),
    ("animated png", _animated("PNG", 2), {}, "multi_frame", "2 frames"),
    ("truncated png", _truncated("PNG"), {}, "corrupt", "damaged or incomplete"),
    ("truncated jpeg", _truncated("JPEG"), {}, "corrupt", "damaged or incomplete"),
    ("truncated webp", _truncated("WEBP"), {}, "corrupt", "damaged or incomplete"),
    ("png cut inside its header", encode(noise(8, 8), "PNG")[:20], {}, "corrupt", "damaged or incomplete"),
    ("png with a bad crc", encode(noise(8, 8), "PNG")[:-5] + b"\x00" * 5, {}, "corrupt", "damaged or incomplete"),
    ("huge png header (Pillow's bomb error)", png_header_only(100_000, 100_000), {}, "too_many_pixels", "pixels"),
    ("png header over our cap", png_header_only(8_000, 6_000), {}, "too_many_pixels", "40 megapixel limit"),
    (
        "png header between Pillow's warning and error (caller cap above Pillow's)",
        png_header_only(10_000, 10_000),
        {"max_pixels": 10**12},
        "too_many_pixels",
        "pixels",
    ),
    ("real compressible png over a low cap", encode(Image.new("RGB", (2000, 1000)), "PNG"), {"max_pixels": 1_000_000}, "too_many_pixels", "2 megapixels"),
]


@pytest.mark.parametrize(("data", "kwargs", "reason", "phrase"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_have_the_right_reason_and_one_plain_sentence(data: bytes, kwargs: dict, reason: str, phrase: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        load_image(data, **kwargs)

    assert caught.value.reason == reason
    assert phrase in str(caught.value)
    assert_plain_sentence(str(caught.value))


def assert_plain_sentence(message: str) -> None:
    assert message.endswith(".")
    assert message[0].isupper()
    assert "\n" not in message
    assert ". " not in message  # one sentence
    for forbidden in ("Traceback", "PIL", "Pillow", "cannot identify", "Error", "Exception", "  "):
        assert forbidden not in message, (forbidden, message)


def test_refusals_are_value_errors_and_carry_their_reason() -> None:
    with pytest.raises(ValueError) as caught:
        load_image(b"")

    assert isinstance(caught.value, ImageRejected)
    assert caught.value.reason == "empty"


def test_the_byte_cap_is_checked_before_anything_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("Image.open must not be called for an oversized upload")

    monkeypatch.setattr(Image, "open", no_decoding)
    oversized = b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000

    with pytest.raises(ImageRejected) as caught:
        load_image(oversized, max_bytes=4096)

    assert caught.value.reason == "too_large"


def test_the_byte_cap_message_never_shows_a_file_as_equal_to_the_limit() -> None:
    with pytest.raises(ImageRejected) as caught:
        load_image(b"x" * (DEFAULT_MAX_BYTES + 1))

    assert str(caught.value) == "This file is 25.1 MB, over the 25 MB limit; upload a smaller or more compressed image."


def test_sniffed_formats_are_refused_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("Image.open must not be called for a sniffed format")

    monkeypatch.setattr(Image, "open", no_decoding)
    for data, reason in [(SVG, "svg"), (b"%!PS-Adobe-3.0\n", "eps"), (b"8BPS\x00\x01", "psd")]:
        with pytest.raises(ImageRejected) as caught:
            load_image(data)
        assert caught.value.reason == reason


def test_an_image_exactly_at_the_pixel_cap_is_accepted() -> None:
    loaded = load_image(encode(Image.new("RGB", (100, 50)), "PNG"), max_pixels=5000)

    assert (loaded.width, loaded.height) == (100, 50)


def test_the_defaults() -> None:
    assert DEFAULT_MAX_BYTES == 25 * 1024 * 1024
    assert DEFAULT_MAX_PIXELS == 40_000_000


def test_pillow_global_settings_and_warning_filters_are_left_as_they_were() -> None:
    max_pixels, truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    filters = list(warnings.filters)

    load_image(encode(noise(8, 8), "PNG"))
    for data in (png_header_only(10_000, 10_000), _truncated("PNG")):
        with pytest.raises(ImageRejected):
            load_image(data, max_pixels=10**12)

    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == (max_pixels, truncated)
    assert truncated is False
    assert warnings.filters == filters


def test_the_settings_defaults_are_the_loaders_caps() -> None:
    from core.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
    from core.settings import Settings

    fields = Settings.model_fields
    assert (fields["max_upload_bytes"].default, fields["max_image_pixels"].default) == (DEFAULT_MAX_BYTES,
                                                                                         DEFAULT_MAX_PIXELS)
