"""Image records and their bytes: the one way an upload enters ChatEdit and a stored image comes back.

An image is cleaned by :func:`core.images.load_image` (caps from Settings), stored once
as a blob addressed by its sha256, and described by one ``images`` row. The same bytes
uploaded twice give the same row, so caches keyed by image (segmentation) hit.

Pages never handle the full image: they show its preview and thumbnail (JPEG blobs made
once, named by the row) and work on its working copy (at most ``WORKING_MAX_SIDE`` on the
long side, kept in memory); jobs edit the full image.
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image as PILImage
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core.images import LoadedImage, load_image
from db.blobs import BlobNotFound
from db.models import LOCAL_USER_ID, Image
from jobs.services import Services

#: The longest side of an image's working copy (segmentation, selection tools, overlays) and of
#: the preview the browser gets: detailed enough to see and select, and the same work for any photo.
WORKING_MAX_SIDE = 1280
#: The longest side of a gallery card's picture.
THUMBNAIL_MAX_SIDE = 384
#: Previews and thumbnails are JPEG: Streamlit hands JPEG bytes to the browser as they are (any
#: other format it decodes and re-encodes on every run), and JPEG encodes much faster than
#: WebP, which would be smaller.
PREVIEW_QUALITY = 85
#: How many working copies a process keeps (the images a page or a worker is busy with).
WORKING_CACHE_SIZE = 8


class ImageNotFound(LookupError):
    def __init__(self, image_id: int) -> None:
        super().__init__(f"There is no image {image_id}.")
        self.image_id = image_id


@dataclass(frozen=True)
class StoredImage:
    id: int
    sha256: str
    width: int
    height: int
    blob_key: str
    created: bool


def clean_upload(services: Services, data: bytes) -> LoadedImage:
    """The upload checked with this installation's caps; raises ``ImageRejected`` with a sentence."""
    settings = services.settings
    return load_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
                      max_side=settings.max_image_side, max_aspect_ratio=settings.max_aspect_ratio)


def store_loaded(services: Services, loaded: LoadedImage, *, user_id: int = LOCAL_USER_ID) -> StoredImage:
    """Store a cleaned image's PNG and its row, or return the row that already holds these bytes."""
    existing = find_by_sha256(services, loaded.sha256)
    if existing is not None:
        return existing
    key = services.blobs.put(loaded.png)
    row = Image(sha256=loaded.sha256, width=loaded.width, height=loaded.height, format=loaded.source_format,
                byte_size=len(loaded.png), blob_key=key, created_by=user_id)
    try:
        with services.database.write_session() as session:
            session.add(row)
            session.flush()
            return _stored(row, created=True)
    except IntegrityError:  # another process stored the same bytes a moment ago
        found = find_by_sha256(services, loaded.sha256)
        if found is None:
            raise
        return found


def store_upload(services: Services, data: bytes, *, user_id: int = LOCAL_USER_ID) -> StoredImage:
    return store_loaded(services, clean_upload(services, data), user_id=user_id)


def store_array(services: Services, rgb: np.ndarray, *, user_id: int = LOCAL_USER_ID) -> StoredImage:
    """Store an image a job produced (an H×W×3 uint8 array)."""
    height, width = rgb.shape[:2]
    return store_encoded(services, encode_png(rgb), width=width, height=height, user_id=user_id)


def store_encoded(services: Services, png: bytes, *, width: int, height: int,
                  user_id: int = LOCAL_USER_ID) -> StoredImage:
    """Store a PNG this program encoded itself (a job's output, possibly carrying its recipe)."""
    loaded = LoadedImage(png=png, sha256=hashlib.sha256(png).hexdigest(), width=width, height=height,
                         source_format="PNG")
    return store_loaded(services, loaded, user_id=user_id)


def store_job_image(services: Services, job_id: int, png: bytes, *, width: int, height: int,
                    user_id: int = LOCAL_USER_ID, name: str = "image") -> StoredImage:
    """Store a job's image as its output ``name``, once per job however often the job runs.

    Delivery is at-least-once: a worker killed after storing its output but before
    settling leaves the job to run again, and that run's bytes may differ (a generative
    backend need not repeat itself to the bit). The (job, name) output row is written
    before the image row, so the first attempt to record it decides the job's image; a
    later attempt gets that image back and stores nothing new, and the job's output, its
    history step and its result all name one image.
    """
    kept = services.queue.output(job_id, name)
    if kept is None:
        key = services.blobs.put(png)
        services.queue.record_output(job_id, name, key, len(png))
        kept = services.queue.output(job_id, name)
        if kept is None:
            raise LookupError(f"Job {job_id}'s output {name!r} was recorded but cannot be read back.")
    if kept.blob_key != hashlib.sha256(png).hexdigest():
        png = services.blobs.get(kept.blob_key)
        with PILImage.open(io.BytesIO(png), formats=["PNG"]) as first:
            width, height = first.size
    return store_encoded(services, png, width=width, height=height, user_id=user_id)


def encode_png(rgb: np.ndarray, *, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of an RGB array, with ``text`` as iTXt chunks (UTF-8).

    Written on every edit while the person waits, so it uses OpenCV's encoder (faster than
    Pillow's) at zlib's fastest level (a slightly larger file, written much sooner on a
    large photo) and adds the text chunks itself.
    """
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"could not encode an image of shape {rgb.shape} as PNG")
    png = encoded.tobytes()
    if not text:
        return png
    chunks = b"".join(_itxt_chunk(key, value) for key, value in text.items())
    end = png.rindex(b"IEND") - 4  # the IEND chunk starts with its 4-byte length
    return png[:end] + chunks + png[end:]


def _itxt_chunk(key: str, value: str) -> bytes:
    body = key.encode("latin-1") + b"\0\0\0" + b"\0" + b"\0" + value.encode("utf-8")
    return struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))


def find_by_sha256(services: Services, sha256: str) -> StoredImage | None:
    with services.database.session() as session:
        row = session.exec(select(Image).where(Image.sha256 == sha256)).first()
        return None if row is None else _stored(row, created=False)


def get_image(services: Services, image_id: int) -> StoredImage:
    with services.database.session() as session:
        row = session.get(Image, image_id)
        if row is None:
            raise ImageNotFound(image_id)
        return _stored(row, created=False)


def image_png(services: Services, image_id: int) -> bytes:
    return services.blobs.get(get_image(services, image_id).blob_key)


def image_rgb(services: Services, image_id: int) -> np.ndarray:
    """The stored image as an H×W×3 uint8 array (stored images are always clean RGB PNGs)."""
    with PILImage.open(io.BytesIO(image_png(services, image_id)), formats=["PNG"]) as image:
        return np.asarray(image.convert("RGB"))


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` shrunk to at most ``max_side`` on the long side with the same aspect; as is when it fits."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def downscaled(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` shrunk to fit ``max_side`` (area averaging, so fine detail does not alias); ``rgb`` itself when it fits."""
    height, width = rgb.shape[:2]
    size = scaled_size(width, height, max_side)
    if size == (width, height):
        return rgb
    return cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA)


_working: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
_working_lock = threading.Lock()


def working_rgb(services: Services, image_id: int, *, full: np.ndarray | None = None) -> np.ndarray:
    """The image's working copy: at most ``WORKING_MAX_SIDE`` on the long side, same aspect, RGB uint8, read-only.

    Segmentation, the selection tools and the page's overlays work on it, so their cost does
    not grow with the photo; edits run on the full image, with masks scaled up to it
    (``core.masks``). The last few are kept in this process, since every rerun of a page needs
    its image's. ``full`` is the decoded image when the caller already has it (no second decode).
    """
    key = (services.settings.resolved_database_url, image_id)
    with _working_lock:
        cached = _working.get(key)
        if cached is not None:
            _working.move_to_end(key)
            return cached
    rgb = image_rgb(services, image_id) if full is None else full
    working = downscaled(rgb, WORKING_MAX_SIDE)
    if working is full:
        working = working.copy()  # the caller's array stays theirs to change
    working.setflags(write=False)
    with _working_lock:
        _working[key] = working
        _working.move_to_end(key)
        while len(_working) > WORKING_CACHE_SIZE:
            _working.popitem(last=False)
    return working


def image_preview(services: Services, image_id: int) -> bytes:
    """What the browser shows of an image: a JPEG at most ``WORKING_MAX_SIDE`` on the long side, made once and kept."""
    return _view(services, image_id, "preview_key")


def image_thumbnail(services: Services, image_id: int) -> bytes:
    """A gallery card's picture: a JPEG at most ``THUMBNAIL_MAX_SIDE`` on the long side, made once and kept."""
    return _view(services, image_id, "thumbnail_key")


def make_previews(services: Services, image_id: int, *, full: np.ndarray | None = None) -> dict[str, bytes]:
    """Make and keep the image's preview and thumbnail (when it has none yet); their bytes by column name.

    A job that has just made an image passes its pixels as ``full``, so the page never
    decodes the full-size image to show it. Both come from the working copy, and the same
    pixels always encode to the same bytes, so two processes making them at once store
    the same blobs.
    """
    with services.database.session() as session:
        row = session.get(Image, image_id)
        if row is None:
            raise ImageNotFound(image_id)
        kept = {"preview_key": row.preview_key, "thumbnail_key": row.thumbnail_key}
    if all(kept.values()):
        try:
            return {column: services.blobs.get(key) for column, key in kept.items() if key is not None}
        except BlobNotFound:
            pass  # a blob removed by hand: make them again
    working = working_rgb(services, image_id, full=full)
    made = {"preview_key": _jpeg(working), "thumbnail_key": _jpeg(downscaled(working, THUMBNAIL_MAX_SIDE))}
    keys = {column: services.blobs.put(data) for column, data in made.items()}
    with services.database.write_session() as session:
        row = session.get(Image, image_id)
        if row is None:
            raise ImageNotFound(image_id)
        row.preview_key, row.thumbnail_key = keys["preview_key"], keys["thumbnail_key"]
        session.add(row)
    return made


def _view(services: Services, image_id: int, column: str) -> bytes:
    with services.database.session() as session:
        row = session.get(Image, image_id)
        if row is None:
            raise ImageNotFound(image_id)
        key = getattr(row, column)
    if key is not None:
        try:
            return services.blobs.get(key)
        except BlobNotFound:
            pass  # made again below
    return make_previews(services, image_id)[column]


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=PREVIEW_QUALITY)
    return buffer.getvalue()


def _stored(row: Image, *, created: bool) -> StoredImage:
    assert row.id is not None
    return StoredImage(id=row.id, sha256=row.sha256, width=row.width, height=row.height, blob_key=row.blob_key,
                       created=created)
