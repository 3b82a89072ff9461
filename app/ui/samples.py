"""Sample images drawn by code, so a newcomer can try ChatEdit without a photo at hand (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from jobs.images import encode_png

SIZE = (384, 512)  # height, width


def _gradient(top: tuple[int, int, int], bottom: tuple[int, int, int], height: int, width: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    column = (1 - t) * np.array(top, dtype=np.float64) + t * np.array(bottom, dtype=np.float64)
    return np.repeat(column, width, axis=1).astype(np.uint8)


def landscape() -> np.ndarray:
    """A sunset over hills and a lake."""
    height, width = SIZE
    image = _gradient((250, 170, 90), (120, 80, 150), height, width)
    cv2.circle(image, (360, 190), 46, (255, 226, 140), -1, cv2.LINE_AA)
    hills = np.array([[0, 260], [90, 200], [200, 250], [320, 190], [430, 240], [512, 210], [512, 300], [0, 300]],
                     np.int32)
    cv2.fillPoly(image, [hills], (60, 110, 70), cv2.LINE_AA)
    image[300:] = _gradient((70, 100, 160), (30, 50, 90), height - 300, width)
    return image


def portrait() -> np.ndarray:
    """A person in a shirt in front of a wall (head, hair, shirt, background: easy to select by click)."""
    height, width = SIZE
    image = np.full((height, width, 3), (205, 215, 225), np.uint8)
    cv2.rectangle(image, (0, 300), (width, height), (150, 120, 90), -1)
    cv2.ellipse(image, (256, 420), (150, 120), 0, 180, 360, (40, 90, 170), -1, cv2.LINE_AA)  # shirt
    cv2.ellipse(image, (256, 170), (70, 88), 0, 0, 360, (225, 185, 155), -1, cv2.LINE_AA)  # face
    cv2.ellipse(image, (256, 130), (78, 60), 0, 180, 360, (60, 40, 30), -1, cv2.LINE_AA)  # hair
    cv2.rectangle(image, (226, 250), (286, 310), (225, 185, 155), -1)  # neck
    return image


def still_life() -> np.ndarray:
    """Fruit on a table: flat colours that recolour and blur visibly."""
    height, width = SIZE
    image = np.full((height, width, 3), (235, 228, 210), np.uint8)
    cv2.rectangle(image, (0, 260), (width, height), (120, 80, 50), -1)
    cv2.circle(image, (160, 240), 60, (200, 30, 40), -1, cv2.LINE_AA)
    cv2.circle(image, (300, 250), 50, (250, 160, 20), -1, cv2.LINE_AA)
    cv2.ellipse(image, (400, 245), (40, 60), 20, 0, 360, (120, 180, 40), -1, cv2.LINE_AA)
    return image


SAMPLES: dict[str, Callable[[], np.ndarray]] = {
    "Sunset landscape": landscape,
    "Portrait": portrait,
    "Still life": still_life,
}


def sample_png(name: str) -> bytes:
    """PNG bytes of the named sample image."""
    try:
        return encode_png(SAMPLES[name]())
    except KeyError:
        raise KeyError(f"There is no sample image called {name!r}; the samples are {', '.join(SAMPLES)}.") from None
