"""What MediaPipe's networks see in a photo: people, the main person's body points and face mesh.

Four networks, each fed the way MediaPipe's own graphs feed it (input size, crop, value
range), because a network is only right on the inputs it was trained on:

- ``selfie_segmentation`` — the whole image squashed to 256×256, values in [0, 1]: everyone's mask;
- ``pose_landmark_full`` — a 256×256 square around the largest person, values in [0, 1]: 33 points
  with visibility, and that person's own mask;
- ``face_detection_short_range`` — the image letterboxed into 128×128, values in [-1, 1];
- ``face_landmark`` — a 192×192 crop around the face, rotated so the eyes are level, values in
  [0, 1]: 468 points and a face-presence score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from core.segmentation.anchors import decode_detections
from core.segmentation.crops import Roi, crop, crop_to_image, eye_line_angle, letterbox
from core.segmentation.face_mesh import LEFT_EYE_OUTER, NUM_POINTS, RIGHT_EYE_OUTER
from core.segmentation.model_runner import ModelRunner

SELFIE = "selfie_segmentation"
FACE_DETECTOR = "face_detection_short_range"
FACE_MESH = "face_landmark"
POSE = "pose_landmark_full"
#: The networks the composite segmenter runs, with the TFLite output names it reads.
MODEL_OUTPUTS: dict[str, tuple[str, ...]] = {
    SELFIE: ("activation_10",),
    FACE_DETECTOR: ("regressors", "classificators"),
    FACE_MESH: ("conv2d_21", "conv2d_31"),
    POSE: ("Identity", "Identity_1", "Identity_2"),
}
MODEL_INPUT_SIZES = {SELFIE: 256, FACE_DETECTOR: 128, FACE_MESH: 192, POSE: 256}

#: A pixel belongs to a person above this probability.
PERSON_THRESHOLD = 0.5
#: Another person counts (for the note) when their area is at least this share of the main person's.
OTHER_PERSON_SHARE = 0.05
#: The pose crop around the largest person's bounding box (MediaPipe enlarges its body box by 1.25).
POSE_ROI_SCALE = 1.25
POSE_PRESENT = 0.5
#: The face-landmark crop around a face box (MediaPipe's face ROI scale).
FACE_ROI_SCALE = 1.5
FACE_PRESENT = 0.5
#: Pose points used to find a face the detector missed: nose, eyes, ears, mouth corners.
POSE_NOSE, POSE_LEFT_EYE, POSE_RIGHT_EYE, POSE_LEFT_EAR, POSE_RIGHT_EAR = 0, 2, 5, 7, 8
POSE_MOUTH = (9, 10)
VISIBLE = 0.5


@dataclass(frozen=True)
class Pose:
    """33 body points in image pixels, their visibility (0–1), and this person's own mask (0–1, image size)."""

    points: np.ndarray
    visibility: np.ndarray
    mask: np.ndarray
    score: float

    def visible(self, *indices: int, threshold: float = VISIBLE) -> bool:
        return bool(all(self.visibility[i] >= threshold for i in indices))


@dataclass(frozen=True)
class Observations:
    """Everything the networks found; the derived parts are computed from this alone."""

    shape: tuple[int, int]
    #: Probability that a pixel is part of any person.
    people: np.ndarray
    #: The main (largest) person's pixels.
    person: np.ndarray
    pose: Pose | None
    #: 468 face-mesh points of the main person in image pixels, or None.
    face_points: np.ndarray | None
    #: "detector", "pose" or "" (no face).
    face_source: str
    other_people: int
    notes: tuple[str, ...] = field(default=())


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def observe(rgb: np.ndarray, runners: Mapping[str, ModelRunner]) -> Observations:
    """Run the networks on an H×W×3 uint8 image (people, then the largest one's body, then their face)."""
    height, width = rgb.shape[:2]
    # 1. Everyone's mask, and the largest person in it.
    people = people_probability(rgb, runners[SELFIE])
    components, box, others = _largest_person(people)
    notes: list[str] = []
    if box is None:
        empty = np.zeros((height, width), dtype=bool)
        return Observations((height, width), people, empty, None, None, "", 0, ("No person was found.",))
    # 2. The largest person's body.
    pose = run_pose(rgb, runners[POSE], Roi.around(*box, scale=POSE_ROI_SCALE))
    if pose is not None:
        person = pose.mask >= PERSON_THRESHOLD
    else:
        person = components
        notes.append("The body's points were not found, so clothes, arms and legs are not labelled.")
    if others:
        notes.append(f"{others + 1} people are in the photo; only the largest is parsed into parts, "
                     "the others are part of the Background.")
    # 3. Their face: the detector's face inside this person, else one placed by the pose's face points.
    face_points, source = None, ""
    for roi, origin in _face_rois(rgb, runners[FACE_DETECTOR], person, pose):
        face_points = run_face_mesh(rgb, runners[FACE_MESH], roi)
        if face_points is not None:
            source = origin
            break
    if face_points is None:
        notes.append("No face was found on the main person, so Face, Hair, Lips, Eyes and Eyebrows are not labelled.")
    return Observations((height, width), people, person, pose, face_points, source, others, tuple(notes))


def people_probability(rgb: np.ndarray, runner: ModelRunner) -> np.ndarray:
    """The selfie model's person probability at image size."""
    height, width = rgb.shape[:2]
    size = MODEL_INPUT_SIZES[SELFIE]
    tensor = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    (mask,) = (runner.run(tensor[None])[name] for name in MODEL_OUTPUTS[SELFIE])
    return cv2.resize(mask.reshape(size, size), (width, height), interpolation=cv2.INTER_LINEAR)


def _largest_person(people: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int] | None, int]:
    """The largest connected person region, its box (x0, y0, x1, y1), and how many other sizeable people there are."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((people >= PERSON_THRESHOLD).astype(np.uint8))
    if count <= 1:
        return np.zeros(people.shape, dtype=bool), None, 0
    areas = stats[1:, cv2.CC_STAT_AREA]
    main = 1 + int(np.argmax(areas))
    x, y, w, h = (int(v) for v in stats[main, :4])
    min_area = max(areas.max() * OTHER_PERSON_SHARE, people.size * 0.002)
    others = int((areas >= min_area).sum()) - 1
    return labels == main, (x, y, x + w, y + h), others


def run_pose(rgb: np.ndarray, runner: ModelRunner, roi: Roi) -> Pose | None:
    """33 body points and this person's mask from a square crop; None when the network sees no body there."""
    size = MODEL_INPUT_SIZES[POSE]
    tensor = crop(rgb, roi, size).astype(np.float32) / 255.0
    outputs = runner.run(tensor[None])
    landmarks, flag, mask = (outputs[name] for name in MODEL_OUTPUTS[POSE])
    score = float(np.asarray(flag).reshape(-1)[0])
    if score < POSE_PRESENT:
        return None
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5)[:33]
    points = roi.from_crop(landmarks[:, :2], size)
    visibility = _sigmoid(landmarks[:, 3])
    person = crop_to_image(_sigmoid(np.asarray(mask).reshape(size, size)).astype(np.float32), roi, rgb.shape[:2])
    return Pose(points=points, visibility=visibility, mask=person, score=score)


def _face_rois(rgb: np.ndarray, detector: ModelRunner, person: np.ndarray, pose: Pose | None) -> list[tuple[Roi, str]]:
    """Where to look for the main person's face, best guess first."""
    rois: list[tuple[Roi, str]] = []
    size = MODEL_INPUT_SIZES[FACE_DETECTOR]
    square, frame = letterbox(rgb, size)
    outputs = detector.run((square.astype(np.float32) / 127.5 - 1.0)[None])
    regressors, scores = (outputs[name] for name in MODEL_OUTPUTS[FACE_DETECTOR])
    candidates = []
    for found in decode_detections(regressors, scores):
        corners = frame.from_crop(np.array([[found.xmin, found.ymin], [found.xmin + found.width,
                                                                        found.ymin + found.height]]) * size, size)
        keypoints = frame.from_crop(found.keypoints * size, size)
        (x0, y0), (x1, y1) = corners
        cx, cy = int(np.clip((x0 + x1) / 2, 0, rgb.shape[1] - 1)), int(np.clip((y0 + y1) / 2, 0, rgb.shape[0] - 1))
        if person[cy, cx]:
            angle = eye_line_angle(keypoints[0], keypoints[1])
            candidates.append(((x1 - x0) * (y1 - y0), Roi.around(x0, y0, x1, y1, scale=FACE_ROI_SCALE, angle=angle)))
    rois.extend((roi, "detector") for _, roi in sorted(candidates, key=lambda c: -c[0]))
    if pose is not None and pose.visible(POSE_NOSE, POSE_LEFT_EYE, POSE_RIGHT_EYE):
        rois.append((_face_roi_from_pose(pose), "pose"))
    return rois


def _face_roi_from_pose(pose: Pose) -> Roi:
    """A face box placed by the pose: centred between the eyes and the mouth, as wide as the ears are apart."""
    points = pose.points
    right_eye, left_eye = points[POSE_RIGHT_EYE], points[POSE_LEFT_EYE]
    mouth = points[list(POSE_MOUTH)].mean(axis=0)
    centre = ((right_eye + left_eye) / 2 + mouth) / 2
    eyes_apart = float(np.linalg.norm(left_eye - right_eye))
    side = max(2.2 * eyes_apart, float(np.linalg.norm(points[POSE_LEFT_EAR] - points[POSE_RIGHT_EAR])),
               2.0 * float(np.linalg.norm(mouth - (right_eye + left_eye) / 2)))
    side *= FACE_ROI_SCALE
    return Roi(float(centre[0]), float(centre[1]), side, side, eye_line_angle(right_eye, left_eye))


def run_face_mesh(rgb: np.ndarray, runner: ModelRunner, roi: Roi, *, refine: bool = True) -> np.ndarray | None:
    """468 face points in image pixels, or None when the network says there is no face in the crop.

    With ``refine`` the crop is placed again around the first answer (as MediaPipe's tracking does
    from one frame to the next), which matters when the first box came from the pose.
    """
    size = MODEL_INPUT_SIZES[FACE_MESH]
    tensor = crop(rgb, roi, size).astype(np.float32) / 255.0
    outputs = runner.run(tensor[None])
    landmarks, presence = (outputs[name] for name in MODEL_OUTPUTS[FACE_MESH])
    if float(_sigmoid(float(np.asarray(presence).reshape(-1)[0]))) < FACE_PRESENT:
        return None
    points = roi.from_crop(np.asarray(landmarks, dtype=np.float64).reshape(NUM_POINTS, 3)[:, :2], size)
    if not refine:
        return points
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    angle = eye_line_angle(points[RIGHT_EYE_OUTER], points[LEFT_EYE_OUTER])
    again = run_face_mesh(rgb, runner, Roi.around(x0, y0, x1, y1, scale=FACE_ROI_SCALE, angle=angle), refine=False)
    return again if again is not None else points
