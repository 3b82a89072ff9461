"""Parts no MediaPipe network labels, derived from the body points, the face mesh, the person mask and colour.

Every part here is an approximation and is marked so in the segmenter's manifest:

- ``Hair`` — person pixels in the head region (around and above the face oval, not below the
  chin) that are neither face nor skin-coloured, in pieces that reach the face above the eyes;
  a hat is Hair too.
- ``Neck`` — skin-coloured person pixels between the chin and the shoulder line, about as wide
  as the jaw; a collar or turtleneck there is Upper-clothes.
- ``Upper-clothes`` — person pixels between the chin and the hip line (the image's bottom when
  the hips are not trusted), and the arms' pixels that are not skin-coloured: sleeves are
  clothes, as in human-parsing datasets.
- ``Left-arm`` / ``Right-arm`` — skin-coloured person pixels near the shoulder–elbow–wrist–hand
  polyline of the person's own left / right arm (shoulder, elbow and wrist all confident).
- ``Pants`` — person pixels below the hip line that are not skin-coloured and are coloured like
  the band just under the hips (which is Pants too); ``Left-leg`` / ``Right-leg`` — the rest of
  the lower body, split by the nearer leg polyline (shoes and socks included).

Each part needs its points to be confident (visibility), and the hips also need to be
plausibly far from the shoulders (a portrait's pose often puts hips inside the chest); a part
whose points are missing is absent, never guessed. Skin colour is learned from the face's
cheeks; without a face a broad YCrCb skin range stands in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from core.segmentation.face_mesh import (
    CHEEKS,
    CHIN,
    FACE_OVAL,
    LEFT_EYE_OUTER,
    RIGHT_EYE_OUTER,
    FaceMasks,
    face_masks,
)
from core.segmentation.perception import Observations, Pose

#: Label names, fixed and ordered: the label map's ids are indices into this tuple.
LABELS: tuple[str, ...] = ("Background", "Hair", "Face", "Lips", "Eyes", "Eyebrows", "Neck", "Upper-clothes",
                           "Left-arm", "Right-arm", "Pants", "Left-leg", "Right-leg")
#: Painting order: a later part wins where two overlap.
PAINT_ORDER: tuple[str, ...] = ("Upper-clothes", "Pants", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Neck",
                                "Hair", "Face", "Eyebrows", "Eyes", "Lips")

#: Parts found by colour, whose masks are cleaned of specks.
SPECKLED = frozenset({"Hair", "Neck", "Left-arm", "Right-arm", "Pants", "Left-leg", "Right-leg"})

# MediaPipe pose indices (the person's left and right).
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_HAND, R_HAND = (17, 19, 21), (18, 20, 22)
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_FOOT, R_FOOT = (29, 31), (30, 32)

#: Hips closer to the shoulders than this many face heights are not trusted (a torso is about 2.6 of them).
MIN_TORSO_FACE_HEIGHTS = 1.8
#: Largest distance in Lab a/b (chroma) from the cheeks' median for a pixel to count as skin.
SKIN_CHROMA_DISTANCE = 12.0
#: Largest difference in Lab lightness (0-255) from the cheeks' for a head pixel to count as skin, not hair.
SKIN_LIGHTNESS_DISTANCE = 30.0
#: Largest Lab distance (lightness counted at a third: folds and shade) from the hip band's colour to be Pants.
PANTS_DISTANCE = 20.0
PANTS_LIGHTNESS_WEIGHT = 1 / 3
#: How the parts' sizes scale with the body: arm radius per face width, the band under the hips per thigh.
ARM_RADIUS_FACE_WIDTHS = 0.55
ARM_RADIUS_SHOULDER_WIDTHS = 0.22
PANTS_BAND_THIGHS = 0.25


@dataclass(frozen=True)
class Parts:
    """The label map (ids into :data:`LABELS`) and the labels painted into it."""

    label_map: np.ndarray
    found: tuple[str, ...]


@dataclass(frozen=True)
class _Face:
    masks: FaceMasks
    oval: np.ndarray
    width: float
    height: float
    chin: np.ndarray
    up: np.ndarray
    #: Midpoint of the eyes' outer corners.
    eyes: np.ndarray


def derive_parts(rgb: np.ndarray, seen: Observations) -> Parts:
    """Every part of the main person, painted into one label map in :data:`PAINT_ORDER`.

    Every part lies on the main person, so the work is done in their bounding box only.
    """
    label_map = np.zeros(seen.shape, dtype=np.uint8)
    rows, cols = np.flatnonzero(seen.person.any(axis=1)), np.flatnonzero(seen.person.any(axis=0))
    if rows.size == 0:
        return Parts(label_map=label_map, found=())
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    offset = np.array([x0, y0], dtype=np.float64)
    window = (slice(y0, y1), slice(x0, x1))
    pose = seen.pose
    local = replace(
        seen, shape=(y1 - y0, x1 - x0), people=seen.people[window], person=seen.person[window],
        face_points=None if seen.face_points is None else seen.face_points - offset,
        pose=None if pose is None else replace(pose, points=pose.points - offset, mask=pose.mask[window]))
    parts = _derive(np.ascontiguousarray(rgb[window]), local)
    label_map[window] = parts.label_map
    return Parts(label_map=label_map, found=parts.found)


def _derive(rgb: np.ndarray, seen: Observations) -> Parts:
    shape = seen.shape
    person = seen.person
    masks: dict[str, np.ndarray] = {}
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    face = _face(seen, shape)
    skin, lit_skin = _skin(rgb, lab, seen, face)
    skin &= person
    pose = seen.pose
    if face is not None:
        fm = face.masks
        masks["Face"] = fm.face & person
        masks["Lips"] = fm.lips & masks["Face"]
        masks["Eyes"] = fm.eyes & masks["Face"]
        masks["Eyebrows"] = fm.eyebrows & masks["Face"]
        above_chin = _side_of_line(shape, face.chin, face.up) > 0
        head = _head_region(face, shape) & person & above_chin
        upper_face = masks["Face"] & (_side_of_line(shape, face.eyes, face.up) > 0)
        masks["Hair"] = _touching(head & ~masks["Face"] & ~lit_skin, upper_face)
    if pose is not None:
        hips = _trusted_hips(pose, face)
        upper = _upper_body(shape, pose, face, hips) & person
        for side, (shoulder, elbow, wrist, hand) in {"Left-arm": (L_SHOULDER, L_ELBOW, L_WRIST, L_HAND),
                                                     "Right-arm": (R_SHOULDER, R_ELBOW, R_WRIST, R_HAND)}.items():
            if not pose.visible(shoulder, elbow, wrist):
                continue  # an arm whose wrist is hidden is mostly sleeve, and its skin specks are noise
            chain = [shoulder, elbow, wrist, *(i for i in hand if pose.visible(i))]
            near = _near_polyline(shape, pose.points[chain], _arm_radius(pose, face)) & person
            masks[side] = near & skin
            upper |= near & ~skin
        if pose.visible(L_SHOULDER, R_SHOULDER):
            clothes = upper
            if face is not None:
                neck = _neck_region(shape, pose, face) & person
                masks["Neck"] = neck & skin
                clothes &= ~(neck & skin)
            masks["Upper-clothes"] = clothes
        if hips is not None:
            _lower_body(lab, person, skin, pose, hips, masks)
    label_map = np.zeros(shape, dtype=np.uint8)
    for name in PAINT_ORDER:
        mask = masks.get(name)
        if mask is not None and name in SPECKLED:
            mask = masks[name] = _without_specks(mask, _speck_area(face, pose))
        if mask is not None and mask.any():
            label_map[mask] = LABELS.index(name)
    found = tuple(name for name in LABELS if name in masks and masks[name].any())
    return Parts(label_map=label_map, found=found)


def _speck_area(face: _Face | None, pose: Pose | None) -> int:
    """Pieces of a derived part smaller than this many pixels are colour noise, not the part."""
    if face is not None:
        return max(4, int((face.width * 0.25) ** 2))
    if pose is not None:
        shoulders = float(np.linalg.norm(pose.points[L_SHOULDER] - pose.points[R_SHOULDER]))
        return max(4, int((shoulders * 0.1) ** 2))
    return 4


def _touching(mask: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The pieces of ``mask`` that touch ``other`` (hair grows from above the eyes, not from a collar by the jaw)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    near = cv2.dilate(other.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    keep = np.zeros(count, dtype=bool)
    keep[np.unique(labels[near & mask])] = True
    keep[0] = False
    return keep[labels]


def _without_specks(mask: np.ndarray, min_area: int) -> np.ndarray:
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    if w == 0 or h == 0:
        return mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask[y:y + h, x:x + w].astype(np.uint8),
                                                               connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    cleaned = np.zeros_like(mask)
    cleaned[y:y + h, x:x + w] = keep[labels]
    return cleaned


def _face(seen: Observations, shape: tuple[int, int]) -> _Face | None:
    if seen.face_points is None:
        return None
    points = seen.face_points
    oval = points[list(FACE_OVAL)]
    top, chin = points[10], points[CHIN]
    up = top - chin
    height = float(np.linalg.norm(up))
    up = up / max(height, 1e-6)
    across = np.array([-up[1], up[0]])
    widths = (oval - chin) @ across
    return _Face(masks=face_masks(points, shape), oval=oval, width=float(widths.max() - widths.min()),
                 height=height, chin=chin, up=up,
                 eyes=(points[RIGHT_EYE_OUTER] + points[LEFT_EYE_OUTER]) / 2)


def _skin(rgb: np.ndarray, lab: np.ndarray, seen: Observations, face: _Face | None) -> tuple[np.ndarray, np.ndarray]:
    """Skin-coloured pixels, and those also about as light as the cheeks.

    Skin is told by its chroma (near the cheeks' when there is a face, a broad YCrCb range
    otherwise), so shaded skin still counts. Light brown hair has a skin-like chroma too and is
    told apart by lightness, which is why the head region uses the second mask.
    """
    if face is not None and seen.face_points is not None:
        radius = max(1, int(face.width * 0.05))
        samples = []
        for index in CHEEKS:
            x, y = (round(v) for v in seen.face_points[index])
            patch = lab[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1]
            if patch.size:
                samples.append(patch.reshape(-1, 3))
        if samples:
            cheeks = np.concatenate(samples).astype(np.float32)
            mean = np.median(cheeks, axis=0)
            spread = float(np.percentile(np.linalg.norm(cheeks[:, 1:] - mean[1:], axis=1), 90))
            # Chroma is a function of (a, b) alone: a 256×256 table answers every pixel with one lookup.
            a, b = np.meshgrid(np.arange(256, dtype=np.float32), np.arange(256, dtype=np.float32), indexing="ij")
            table = np.hypot(a - mean[1], b - mean[2]) <= max(SKIN_CHROMA_DISTANCE, 1.5 * spread)
            skin = table[lab[..., 1], lab[..., 2]]
            low, high = mean[0] - SKIN_LIGHTNESS_DISTANCE, mean[0] + SKIN_LIGHTNESS_DISTANCE
            lit = cv2.inRange(lab[..., 0], max(0.0, float(low)), min(255.0, float(high))).astype(bool)
            return skin, skin & lit
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    skin = cv2.inRange(ycrcb, (40, 135, 85), (255, 172, 127)).astype(bool)
    return skin, skin


def _side_of_line(shape: tuple[int, int], point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Signed distance of every pixel from the line through ``point`` with this unit ``normal``."""
    across = (np.arange(shape[1], dtype=np.float32) - np.float32(point[0])) * np.float32(normal[0])
    down = (np.arange(shape[0], dtype=np.float32) - np.float32(point[1])) * np.float32(normal[1])
    return down[:, None] + across[None, :]


def _head_region(face: _Face, shape: tuple[int, int]) -> np.ndarray:
    """An ellipse around the face oval, wider and taller, shifted up: where hair grows."""
    centre = face.chin + face.up * face.height * 0.75
    angle = float(np.degrees(np.arctan2(face.up[0], -face.up[1])))
    canvas = np.zeros(shape, dtype=np.uint8)
    axes = (round(face.width * 1.0), round(face.height * 1.1))
    cv2.ellipse(canvas, (round(centre[0]), round(centre[1])), axes, angle, 0, 360, 1, -1)
    return canvas.astype(bool)


def _trusted_hips(pose: Pose, face: _Face | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The hip points when both are confident and plausibly far below the shoulders."""
    if not pose.visible(L_HIP, R_HIP, L_SHOULDER, R_SHOULDER):
        return None
    points = pose.points
    torso = float(np.linalg.norm((points[L_HIP] + points[R_HIP]) / 2 - (points[L_SHOULDER] + points[R_SHOULDER]) / 2))
    if face is not None and torso < MIN_TORSO_FACE_HEIGHTS * face.height:
        return None
    return points[L_HIP], points[R_HIP]


def _body_down(pose: Pose) -> np.ndarray:
    """Unit vector from the shoulders towards the hips (the image's down when the hips are unknown)."""
    points = pose.points
    down = (points[L_HIP] + points[R_HIP]) / 2 - (points[L_SHOULDER] + points[R_SHOULDER]) / 2
    norm = float(np.linalg.norm(down))
    return down / norm if norm > 1e-6 else np.array([0.0, 1.0])


def _upper_body(shape: tuple[int, int], pose: Pose, face: _Face | None,
                hips: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Pixels between the chin (or the shoulders) and the hip line."""
    points = pose.points
    down = _body_down(pose) if hips is not None else np.array([0.0, 1.0])
    top = face.chin if face is not None else (points[L_SHOULDER] + points[R_SHOULDER]) / 2
    region = _side_of_line(shape, top, down) > 0
    if hips is not None:
        region &= _side_of_line(shape, (hips[0] + hips[1]) / 2, _hip_normal(pose, hips)) <= 0
    return region


def _hip_normal(pose: Pose, hips: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Unit normal of the hip line, pointing away from the shoulders."""
    along = hips[0] - hips[1]
    normal = np.array([-along[1], along[0]]) / max(float(np.linalg.norm(along)), 1e-6)
    return normal if float(normal @ _body_down(pose)) > 0 else -normal


def _arm_radius(pose: Pose, face: _Face | None) -> float:
    if face is not None:
        return max(2.0, face.width * ARM_RADIUS_FACE_WIDTHS)
    shoulders = float(np.linalg.norm(pose.points[L_SHOULDER] - pose.points[R_SHOULDER]))
    return max(2.0, shoulders * ARM_RADIUS_SHOULDER_WIDTHS)


def _near_polyline(shape: tuple[int, int], points: np.ndarray, radius: float) -> np.ndarray:
    canvas = np.zeros(shape, dtype=np.uint8)
    thickness = max(1, round(2 * radius))
    path = np.round(points).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [path], False, 1, thickness=thickness, lineType=cv2.LINE_8)
    for x, y in path.reshape(-1, 2):
        cv2.circle(canvas, (int(x), int(y)), round(radius), 1, -1)
    return canvas.astype(bool)


def _neck_region(shape: tuple[int, int], pose: Pose, face: _Face) -> np.ndarray:
    """A band as wide as most of the jaw, from the chin down to the shoulder line."""
    points = pose.points
    shoulders = (points[L_SHOULDER] + points[R_SHOULDER]) / 2
    down = -face.up
    across = np.array([-down[1], down[0]])
    depth = max(float((shoulders - face.chin) @ down), face.height * 0.15)
    half = face.width * 0.33
    start = face.chin - down * face.height * 0.05
    corners = np.array([start - across * half, start + across * half, start + down * depth + across * half,
                        start + down * depth - across * half])
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(corners).astype(np.int32)], 1)
    return canvas.astype(bool)


def _lower_body(lab: np.ndarray, person: np.ndarray, skin: np.ndarray, pose: Pose,
                hips: tuple[np.ndarray, np.ndarray], masks: dict[str, np.ndarray]) -> None:
    """Pants (thigh-coloured, or just under the hips) and each leg (the rest, by the nearer leg)."""
    shape = person.shape
    points = pose.points
    below = _side_of_line(shape, (hips[0] + hips[1]) / 2, _hip_normal(pose, hips))
    lower = person & (below > 0)
    legs = {name: chain for name, chain in (("Left-leg", [L_HIP, L_KNEE, L_ANKLE, *L_FOOT]),
                                            ("Right-leg", [R_HIP, R_KNEE, R_ANKLE, *R_FOOT]))
            if pose.visible(chain[0], chain[1])}
    thighs = [(points[chain[0]], points[chain[1]]) for chain in legs.values()]
    if not thighs:
        masks["Pants"] = lower
        return
    thigh_length = float(np.mean([np.linalg.norm(k - h) for h, k in thighs]))
    # The pants' colour is what most of the band just under the hips wears (skin there means shorts' edge).
    band = lower & (below <= PANTS_BAND_THIGHS * thigh_length) & ~skin
    pants = band.copy()
    if band.any():
        colour = np.median(lab[band], axis=0).astype(np.float32)
        weights = np.array([PANTS_LIGHTNESS_WEIGHT, 1.0, 1.0], dtype=np.float32)
        candidates = lower & ~skin
        distance = np.linalg.norm((lab[candidates].astype(np.float32) - colour) * weights, axis=1)
        pants[candidates] |= distance <= PANTS_DISTANCE
    masks["Pants"] = pants
    rest = lower & ~pants
    distances = {}
    for name, chain in legs.items():
        visible = [i for i in chain if pose.visible(i)]
        distances[name] = _distance_to_polyline(shape, points[visible])
    if len(distances) == 1:
        (name,) = distances
        masks[name] = rest
        return
    left_nearer = distances["Left-leg"] <= distances["Right-leg"]
    masks["Left-leg"] = rest & left_nearer
    masks["Right-leg"] = rest & ~left_nearer


def _distance_to_polyline(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    canvas = np.full(shape, 255, dtype=np.uint8)
    path = np.round(points).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [path], False, 0, thickness=1)
    return cv2.distanceTransform(canvas, cv2.DIST_L2, 3)
