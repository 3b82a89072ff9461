"""The embedded segmenter's parts (Lips, Eyes, Eyebrows, Neck) are understood by the contract and the planners."""

from __future__ import annotations

import numpy as np
import pytest

from core.commands import validate
from core.masks import mask_from_labels
from core.planners import make_planner
from core.prompting import system_prompt
from core.rules import load_rules

#: What the embedded segmenter labels on a portrait.
EMBEDDED = ["Background", "Hair", "Face", "Lips", "Eyes", "Eyebrows", "Neck", "Upper-clothes", "Left-arm",
            "Right-arm"]
#: A SegFormer human-parsing export: the face parts are inside Face.
SEGFORMER = ["Background", "Hair", "Face", "Upper-clothes", "Left-arm", "Right-arm", "Pants"]


def commands(text: str, labels: list[str]) -> list[dict]:
    return [c.to_wire() for c in make_planner("rules").plan(text, labels=labels).commands]


def test_the_headline_request_on_the_embedded_parts() -> None:
    assert commands("make her jacket red and blur the background", EMBEDDED) == [
        {"command": "recolor", "paras": [["Upper-clothes"], "red"]},
        {"command": "blur", "paras": [["Background"], 0.5]},
    ]


@pytest.mark.parametrize(("text", "part"), [
    ("make her lips red", "Lips"), ("把嘴唇变红", "Lips"), ("make the eyes blue", "Eyes"), ("把眼睛变成蓝色", "Eyes"),
    ("make the eyebrows darker", "Eyebrows"), ("眉毛颜色加深", "Eyebrows"), ("make the neck brighter", "Neck"),
    ("把脖子调亮一点", "Neck"),
])
def test_face_parts_and_the_neck_are_targets_of_their_own(text: str, part: str) -> None:
    (command,) = commands(text, EMBEDDED)
    targets = next(p for p in command["paras"] if isinstance(p, list))
    assert targets == [part]


@pytest.mark.parametrize("text", ["make her lips red", "make the eyes blue", "make the eyebrows darker"])
def test_without_separate_face_parts_the_face_is_the_target(text: str) -> None:
    (command,) = commands(text, SEGFORMER)
    assert next(p for p in command["paras"] if isinstance(p, list)) == ["Face"]


def test_the_person_means_every_part_of_them_but_a_possessive_means_the_part() -> None:
    (command,) = commands("make the person brighter", EMBEDDED)
    assert command["command"] == "adjust"
    assert sorted(command["paras"][2]) == sorted(label for label in EMBEDDED if label != "Background")
    assert commands("make the person's shirt white", EMBEDDED) == [
        {"command": "recolor", "paras": [["Upper-clothes"], "white"]}]
    (zh,) = commands("把人物调亮", EMBEDDED)
    assert "Background" not in zh["paras"][2] and "Face" in zh["paras"][2]


def test_the_new_labels_are_valid_targets_only_where_the_image_has_them() -> None:
    outcome = validate([{"command": "recolor", "paras": [["Lips"], "red"]}], EMBEDDED)
    assert len(outcome.commands) == 1 and not outcome.rejections
    refused = validate([{"command": "recolor", "paras": [["Lips"], "red"]}], SEGFORMER)
    assert not refused.commands and "Lips" in refused.rejections[0].reason


def test_a_command_on_the_face_covers_the_face_parts_labelled_apart() -> None:
    names = ["Background", "Face", "Lips", "Eyes", "Eyebrows", "Hair"]
    label_map = np.array([[0, 1, 2], [3, 4, 5]])
    assert mask_from_labels(label_map, names, ["Face"]).tolist() == [[False, True, True], [True, True, False]]
    # A part alone is only that part.
    assert mask_from_labels(label_map, names, ["Lips"]).tolist() == [[False, False, True], [False, False, False]]
    assert load_rules().contains["Face"] == ("Lips", "Eyes", "Eyebrows")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_system_prompt_says_what_the_face_includes(language: str) -> None:
    prompt = system_prompt(EMBEDDED, language)
    assert "Lips, Eyes, Eyebrows" in prompt
    assert "Lips" not in system_prompt(SEGFORMER, language)
