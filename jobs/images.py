"""Image records and their bytes: the one way an upload enters ChatEdit and a stored image comes back.

An image is cleaned by :func:`core.images.load_image` (caps from Settings), stored once
as a blob addressed by its sha256, and described by one ``images`` row. The same bytes
uploaded twice give the same row, so caches keyed by image (segmentation) hit.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image as PILImage
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core.images import LoadedImage, load_image
from db.models import LOCAL_USER_ID, Image
from jobs.services import Services


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
    return load_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels)


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


def encode_png(rgb: np.ndarray, *, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of an RGB array, with ``text`` as iTXt chunks (UTF-8).

    Written on every edit, so it uses OpenCV's encoder (about a third faster than
    Pillow's on a 1024² photo) and adds the text chunks itself.
    """
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_PNG_COMPRESSION, 3])
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


def _stored(row: Image, *, created: bool) -> StoredImage:
    assert row.id is not None
    return StoredImage(id=row.id, sha256=row.sha256, width=row.width, height=row.height, blob_key=row.blob_key,
                       created=created)
