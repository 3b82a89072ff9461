"""Safe image loading: untrusted upload bytes in, one clean RGB PNG and its sha256 out.

Uploads are hostile until proven otherwise. Every check that can be made on the raw
bytes (size, magic numbers) runs before any decoder sees them, Pillow only parses the
formats we accept, and pixel counts are checked from the header before the pixels are
allocated. What comes out is always the same shape (8-bit RGB, upright, PNG, no
metadata) so every later step — segmentation, editing, hashing, the blob store — can
rely on it.

Every refusal is an :class:`ImageRejected` whose ``str()`` is one plain sentence a
person can act on; its ``reason`` is a short code for programs and tests.

Two process-wide Pillow settings are deliberately left alone: ``Image.MAX_IMAGE_PIXELS``
(we compare against our own cap instead) and ``ImageFile.LOAD_TRUNCATED_IMAGES`` (it must
stay False, or damaged files would load silently padded with grey).
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

if TYPE_CHECKING:
    from PIL import ImageCms

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000

#: Pillow format names we accept, and the name a person knows them by. MPO is how
#: Pillow reports the multi-picture JPEGs many phone cameras write; it is a JPEG.
_ACCEPTED = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WEBP", "BMP": "BMP", "TIFF": "TIFF"}
#: The Pillow plugins allowed to parse upload bytes at all (JPEG covers MPO).
_PARSERS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
_UPLOAD_HINT = "upload a PNG, JPEG, WebP, BMP or TIFF image"
_DISPLAY_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF"}

#: What Pillow raises from a damaged or truncated file (it uses SyntaxError and
#: struct.error for malformed headers and OSError for broken data streams).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)

_WHITE = (255, 255, 255)


class ImageRejected(ValueError):
    """An upload we will not use; ``str(exc)`` is shown to the person as it is."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class LoadedImage:
    """An upload after cleaning: the PNG is the only form the rest of ChatEdit stores or hashes."""

    png: bytes = field(repr=False)
    sha256: str
    width: int
    height: int
    source_format: str

    def to_pil(self) -> Image.Image:
        """Decode now, so the caller gets a usable image that no longer needs these bytes."""
        image = Image.open(io.BytesIO(self.png), formats=["PNG"])
        image.load()
        return image


def load_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Check, decode and normalise an upload, or raise :class:`ImageRejected`.

    The order matters: the cheap checks on raw bytes come first so that an oversized or
    wrong-typed file never reaches a decoder, and the pixel cap is checked from the header
    before the pixel data is decompressed.
    """
    _check_bytes(data, max_bytes)
    _refuse_by_sniffing(data)
    image = _open_header(data)
    source_format = _ACCEPTED[image.format or ""]
    _check_pixels(image.size, max_pixels)
    _check_single_frame(image)
    rgb = _to_rgb(_upright(_decode(data)))
    png = _encode_png(rgb)
    return LoadedImage(
        png=png,
        sha256=hashlib.sha256(png).hexdigest(),
        width=rgb.width,
        height=rgb.height,
        source_format=source_format,
    )


# --- checks on raw bytes -------------------------------------------------------------


def _check_bytes(data: bytes, max_bytes: int) -> None:
    if not data:
        raise ImageRejected("empty", f"This file is empty; {_UPLOAD_HINT}.")
    if len(data) > max_bytes:
        raise ImageRejected(
            "too_large",
            f"This file is {_megabytes(len(data))}, over the {_megabytes(max_bytes)} limit; "
            "upload a smaller or more compressed image.",
        )


def _megabytes(n: int) -> str:
    """Rounded up to a tenth, so a file just over the limit never reads as equal to it."""
    if n < 1024 * 1024:
        return f"{math.ceil(n / 1024):,} KB"
    value = math.ceil(n * 10 / (1024 * 1024)) / 10
    return f"{value:g} MB"


def _has_raster_magic(data: bytes) -> bool:
    return (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        or data.startswith(b"\xff\xd8\xff")
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
        or data.startswith(b"BM")
        or data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    )


def _looks_like_svg(data: bytes) -> bool:
    head = data[:1024]
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    return stripped.startswith((b"<?xml", b"<svg")) or b"<svg" in head.lower()


def _refuse_by_sniffing(data: bytes) -> None:
    """Formats people often try to upload, named, so the message says what the file is."""
    if data.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        raise ImageRejected("eps", f"This file is an EPS (PostScript) document; {_UPLOAD_HINT}.")
    if data.startswith(b"8BPS"):
        raise ImageRejected("psd", f"This file is a Photoshop (PSD) document; export it and {_UPLOAD_HINT}.")
    if data.startswith((b"GIF87a", b"GIF89a")):
        _refuse_gif(data)
    if _has_raster_magic(data):
        return
    if _looks_like_svg(data):
        raise ImageRejected("svg", f"This file is an SVG; {_UPLOAD_HINT}.")
    named = _other_format_name(data)
    if named:
        raise ImageRejected("unsupported_format", f"This file is {named}, which is not accepted; {_UPLOAD_HINT}.")


def _other_format_name(data: bytes) -> str | None:
    if data.startswith(b"%PDF"):
        return "a PDF document"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"hevc"):
            return "a HEIC image"
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
    return None


def _refuse_gif(data: bytes) -> None:
    frames = _gif_frame_count(data)
    if frames > 1:
        raise ImageRejected(
            "gif",
            f"This GIF is animated with {frames} frames and GIF files are not accepted; "
            f"upload a single PNG, JPEG, WebP, BMP or TIFF image.",
        )
    raise ImageRejected("gif", f"This file is a GIF, which is not accepted; {_UPLOAD_HINT}.")


def _gif_frame_count(data: bytes) -> int:
    """Only for the wording of the refusal, so any trouble counting just means "one"."""
    try:
        with _bomb_guard(), Image.open(io.BytesIO(data), formats=["GIF"]) as gif:
            return int(getattr(gif, "n_frames", 1))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, *_DECODE_ERRORS):
        return 1


# --- checks on the header ------------------------------------------------------------


@contextmanager
def _bomb_guard() -> Iterator[None]:
    """Pillow's own bomb check only warns below twice its limit; here it always refuses.

    Our cap (``max_pixels``) is normally the tighter one and is compared by hand; this
    catches what Pillow finds first (e.g. a caller's cap above Pillow's global limit).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(
                "too_many_pixels", "This image has too many pixels to process safely; upload a smaller image."
            ) from exc


def _open_header(data: bytes) -> Image.Image:
    """Parse only the header, and only with the plugins of accepted formats."""
    with _bomb_guard():
        try:
            image = Image.open(io.BytesIO(data), formats=_PARSERS)
        except _DECODE_ERRORS as exc:
            raise _unreadable(data) from exc
    if image.format not in _ACCEPTED:
        raise ImageRejected("unsupported_format", f"This file's format is not accepted; {_UPLOAD_HINT}.")
    return image


def _unreadable(data: bytes) -> ImageRejected:
    if _has_raster_magic(data):
        return _corrupt()
    return ImageRejected(
        "unsupported_format", f"This file is not an image we can read; {_UPLOAD_HINT}."
    )


def _corrupt() -> ImageRejected:
    return ImageRejected(
        "corrupt", "This image file is damaged or incomplete; export it again and upload the new file."
    )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.1f}".removesuffix(".0")


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            f"This image is {width:,} × {height:,} pixels ({_megapixels(width * height)} megapixels), "
            f"over the {_megapixels(max_pixels)} megapixel limit; upload a smaller image.",
        )


def _check_single_frame(image: Image.Image) -> None:
    """Animations and multi-page files are refused rather than silently cut to one frame.

    MPO is the exception: its extra pictures are a phone's previews or depth maps, and
    the first picture is the photo.
    """
    if image.format == "MPO":
        return
    try:
        frames = int(getattr(image, "n_frames", 1))
    except _DECODE_ERRORS as exc:
        raise _corrupt() from exc
    if frames <= 1:
        return
    name = _DISPLAY_NAMES[_ACCEPTED[image.format or ""]]
    if image.format == "TIFF":
        message = f"This TIFF has {frames} pages; upload a single image."
    else:
        message = f"This {name} is animated with {frames} frames; upload a single still image."
    raise ImageRejected("multi_frame", message)


# --- decoding and normalising --------------------------------------------------------


def _decode(data: bytes) -> Image.Image:
    """verify() checks what it can without decoding, but leaves the image unusable: reopen."""
    with _bomb_guard():
        try:
            with Image.open(io.BytesIO(data), formats=_PARSERS) as probe:
                probe.verify()
            image = Image.open(io.BytesIO(data), formats=_PARSERS)
            image.load()
        except _DECODE_ERRORS as exc:
            raise _corrupt() from exc
    return image


def _upright(image: Image.Image) -> Image.Image:
    """Apply the camera's Orientation tag; the pixels, not a tag, must say which way is up.

    A malformed EXIF block is not worth refusing a photo for: its pixels are kept as stored.
    """
    try:
        return ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, colours in sRGB, transparency flattened onto white (editors expect no alpha)."""
    image = _to_srgb(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _wide_grey_to_l(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _wide_grey_to_l(image: Image.Image) -> Image.Image:
    """Pillow's own conversion clips 16-bit grey at 255 (mostly white); scale it instead."""
    import numpy as np

    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F" and values.size and float(np.nanmax(values)) <= 1.0:
        scaled = values * 255.0
    elif image.mode == "F":
        scaled = values
    else:
        scaled = values / 257.0
    return Image.fromarray(np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8), mode="L")


def _to_srgb(image: Image.Image) -> Image.Image:
    """The ICC profile is about to be dropped, so bake it into the pixels first.

    Without this a wide-gamut phone photo (Display P3) would look washed out. Any profile
    that cannot be applied is ignored: the colours are then as stored, never an error.
    """
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without LittleCMS
        return image
    output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, _srgb_profile(), outputMode=output_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _encode_png(image: Image.Image) -> bytes:
    """PNG with no metadata at all: no EXIF, no text chunks, no ICC profile, no dpi.

    Privacy: uploads carry GPS positions, camera serials, names and timestamps that must
    not travel into the gallery or training data. Reproducibility: with only pixels in the
    file, the same pixels always give the same bytes and so the same sha256 (for a given
    Pillow and zlib), which is what de-duplication and caches key on. ``optimize=False``
    because uploads are re-encoded on every request and the extra search is slow.
    """
    clean = Image.new("RGB", image.size)  # a fresh image: nothing in .info to leak
    clean.paste(image)
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
