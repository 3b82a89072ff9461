"""Safe image loading: untrusted upload bytes in, one clean RGB PNG and its sha256 out.

Uploads are hostile until proven otherwise. Every check that can be made on the raw
bytes (size, magic numbers) runs before any decoder sees them, Pillow only parses the
formats we accept, and pixel counts are checked from the header before the pixels are
allocated: the pixel count, the longest side and the aspect ratio each have a cap, because
work on an image grows with more than its pixel count (feathered edges and blurs with
its longest side, thumbnails and segmentation with how far it is from square). PNG text
metadata is measured before Pillow reads it, so a file too rich in text is refused as
such rather than as damaged. What comes out is always the same shape (8-bit RGB, upright, PNG, no
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
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, PngImagePlugin

if TYPE_CHECKING:
    from PIL import ImageCms

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE = 12_000
DEFAULT_MAX_ASPECT_RATIO = 20.0

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
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    #: The upload had transparent pixels, flattened onto white (the person is told so).
    flattened: bool = False

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
    max_side: int = DEFAULT_MAX_SIDE,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
) -> LoadedImage:
    """Check, decode and normalise an upload, or raise :class:`ImageRejected`.

    The order matters: the cheap checks on raw bytes come first so that an oversized or
    wrong-typed file never reaches a decoder, and the pixel, side and aspect-ratio caps are
    checked from the header before the pixel data is decompressed.
    """
    _check_bytes(data, max_bytes)
    _refuse_by_sniffing(data)
    _check_png_text(data)
    image = _open_header(data)
    source_format = _ACCEPTED[image.format or ""]
    _check_pixels(image.size, max_pixels)
    check_dimensions(image.width, image.height, max_side=max_side, max_aspect_ratio=max_aspect_ratio)
    _check_single_frame(image)
    decoded = _upright(_decode(data))
    flattened = _has_transparent_pixels(decoded)
    rgb = _to_rgb(decoded)
    png = _encode_png(rgb)
    return LoadedImage(
        png=png,
        sha256=hashlib.sha256(png).hexdigest(),
        width=rgb.width,
        height=rgb.height,
        source_format=source_format,
        flattened=flattened,
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


def _check_png_text(data: bytes) -> None:
    """Refuse a PNG whose text chunks Pillow would not read, naming the text, not damage.

    Pillow stops at a compressed text chunk over ``PngImagePlugin.MAX_TEXT_CHUNK`` once
    inflated, and at text chunks over ``MAX_TEXT_MEMORY`` in all; it says so with a
    ValueError that would otherwise read as a damaged file. The limits are Pillow's own,
    read at each call, so ChatEdit's recipes (a few KB of uncompressed iTXt) stay readable.
    Inflation stops at the limit, so a text bomb costs at most that much memory.
    """
    if not data.startswith(_PNG_MAGIC):
        return
    chunk_limit, total_limit = PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY
    total = 0
    for kind, body in _png_chunks(data):
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        size = _text_size(kind, body, chunk_limit)
        if size is None:
            raise _text_too_large(chunk_limit, "in one chunk")
        total += size
        if total > total_limit:
            raise _text_too_large(total_limit, "in all")


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(type, body) of each whole chunk; a cut or malformed file simply ends the walk (the decoder judges it)."""
    view = memoryview(data)
    position = len(_PNG_MAGIC)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", view[position:position + 8])
        end = position + 8 + length
        if end + 4 > len(data):
            return
        yield kind, view[position + 8:end]
        if kind == b"IEND":
            return
        position = end + 4


def _text_size(kind: bytes, body: memoryview, limit: int) -> int | None:
    """The text's size once inflated, or None when it is over ``limit`` (Pillow's rule for one chunk).

    Chunks Pillow skips as malformed (no keyword separator, a broken zlib stream) count as empty.
    """
    raw = bytes(body)
    keyword_end = raw.find(b"\0")
    if keyword_end < 0:
        return 0
    rest = raw[keyword_end + 1:]
    if kind == b"tEXt":
        return len(rest)
    if kind == b"zTXt":
        compressed = rest[1:] if rest[:1] == b"\0" else None
    else:  # iTXt: flag, method, language\0, translated keyword\0, text
        parts = rest[2:].split(b"\0", 2) if len(rest) >= 2 else []
        if len(parts) < 3:
            return 0
        if rest[0] == 0:
            return len(parts[2])
        compressed = parts[2] if rest[1] == 0 else None
    if compressed is None:
        return 0
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(compressed, limit)
    except zlib.error:
        return 0
    return None if inflater.unconsumed_tail else len(text)


def _text_too_large(limit: int, where: str) -> ImageRejected:
    return ImageRejected(
        "text_too_large",
        f"This PNG's text metadata is larger than {_megabytes(limit)} {where} once uncompressed; "
        "save the image without text metadata and upload it again.",
    )


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


def check_dimensions(width: int, height: int, *, max_side: int = DEFAULT_MAX_SIDE,
                     max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO) -> None:
    """Within the pixel cap an image can still be a 39-million-pixel line, which no edit can work on.

    Public because the edit job asks it too, of images stored before a cap was lowered.
    """
    longest, shortest = max(width, height), min(width, height)
    if longest > max_side:
        raise ImageRejected(
            "side_too_long",
            f"This image is {width:,} × {height:,} pixels and its longest side is over the {max_side:,} pixel "
            "limit (CHATEDIT_MAX_IMAGE_SIDE); scale it down and upload it again.",
        )
    if shortest == 0 or longest / shortest > max_aspect_ratio:
        ratio = f"{math.ceil(longest * 10 / shortest) / 10:,.1f}".removesuffix(".0") if shortest else "unbounded"
        raise ImageRejected(
            "aspect_ratio",
            f"This image is {width:,} × {height:,} pixels, an aspect ratio of {ratio}:1, over the "
            f"{max_aspect_ratio:g}:1 limit (CHATEDIT_MAX_ASPECT_RATIO); crop it closer to square and upload it again.",
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


def _has_transparent_pixels(image: Image.Image) -> bool:
    """An alpha channel (or a transparent palette colour) that some pixel really uses; an opaque one changes nothing."""
    if not _has_alpha(image):
        return False
    try:
        low, _ = image.convert("RGBA").getchannel("A").getextrema()
    except (ValueError, OSError):  # a mode Pillow cannot convert directly (16-bit grey with a transparent value)
        return True
    return bool(low < 255)


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
    Pillow and zlib), which is what de-duplication and caches key on. Speed: every upload
    is encoded while the person waits, so zlib runs at its fastest level (a slightly
    larger file, written much sooner); ``optimize=False`` skips the extra search for the
    same reason.
    """
    clean = Image.new("RGB", image.size)  # a fresh image: nothing in .info to leak
    clean.paste(image)
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()
