"""The offline rule planner: what a person types, in English or Chinese, becomes the commands they meant."""

from __future__ import annotations

import pytest

from core.commands import validate
from core.planners import make_planner
from core.planners.base import detect_language

HUMAN = ["Background", "Hat", "Hair", "Upper-clothes", "Pants", "Left-shoe", "Right-shoe", "Face", "Left-arm",
         "Right-arm", "Bag"]


def plan(request: str, labels: list[str] | None = None):
    return make_planner("rules").plan(request, labels=HUMAN if labels is None else labels)


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("make the shirt white and blur the background",
         [{"command": "recolor", "paras": [["Upper-clothes"], "white"]},
          {"command": "blur", "paras": [["Background"], 0.5]}]),
        ("make it a bit brighter", [{"command": "adjust", "paras": ["brightness", 0.15, []]}]),
        ("make the photo much darker", [{"command": "adjust", "paras": ["brightness", -0.6, []]}]),
        ("remove the bag", [{"command": "remove", "paras": [["Bag"]]}]),
        ("get rid of the hat", [{"command": "remove", "paras": [["Hat"]]}]),
        ("make the shirt and the pants navy", [{"command": "recolor", "paras": [["Upper-clothes", "Pants"], "navy"]}]),
        ("change the shoes to red", [{"command": "recolor", "paras": [["Left-shoe", "Right-shoe"], "red"]}]),
        ("replace the background with a snowy mountain",
         [{"command": "change", "paras": [["Background"], "snowy mountain"]}]),
        ("put her on a beach", [{"command": "change", "paras": [["Background"], "beach"]}]),
        ("make it look like a watercolor painting", [{"command": "style", "paras": ["watercolor"]}]),
        ("make her smile", [{"command": "face", "paras": ["make her smile"]}]),
        ("turn it black and white", [{"command": "adjust", "paras": ["saturation", -1.0, []]}]),
        ("make the colors more vivid, then slightly warmer",
         [{"command": "adjust", "paras": ["saturation", 0.3, []]},
          {"command": "adjust", "paras": ["warmth", 0.15, []]}]),
        ("sharpen the hair", [{"command": "adjust", "paras": ["sharpness", 0.3, ["Hair"]]}]),
        ("blur the background a lot", [{"command": "blur", "paras": [["Background"], 1.0]}]),
    ],
)
def test_english_requests(request_text: str, expected: list[dict]) -> None:
    result = plan(request_text)
    assert result.wire() == expected
    assert not result.not_understood
    assert result.language == "en"


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("把上衣换成红色，并且把背景虚化",
         [{"command": "recolor", "paras": [["Upper-clothes"], "红色"]},
          {"command": "blur", "paras": [["Background"], 0.5]}]),
        ("头发染成粉色", [{"command": "recolor", "paras": [["Hair"], "粉色"]}]),
        ("将背景更换为蓝天白云", [{"command": "change", "paras": [["Background"], "blue sky with white clouds"]}]),
        ("去掉包", [{"command": "remove", "paras": [["Bag"]]}]),
        ("让照片亮一点", [{"command": "adjust", "paras": ["brightness", 0.15, []]}]),
        ("画面非常暗", [{"command": "adjust", "paras": ["brightness", -0.6, []]}]),
        ("把照片变成油画风格", [{"command": "style", "paras": ["oil painting"]}]),
        ("让她微笑", [{"command": "face", "paras": ["她微笑"]}]),
        ("颜色更鲜艳一些，然后暖一点",
         [{"command": "adjust", "paras": ["saturation", 0.15, []]},
          {"command": "adjust", "paras": ["warmth", 0.15, []]}]),
        ("锐化头发", [{"command": "adjust", "paras": ["sharpness", 0.3, ["Hair"]]}]),
        ("把鞋子换成深蓝色", [{"command": "recolor", "paras": [["Left-shoe", "Right-shoe"], "darkblue"]}]),
        ("把帽子和上衣换成白色", [{"command": "recolor", "paras": [["Hat", "Upper-clothes"], "白色"]}]),
    ],
)
def test_chinese_requests(request_text: str, expected: list[dict]) -> None:
    result = plan(request_text)
    assert result.wire() == expected
    assert not result.not_understood
    assert result.language == "zh"


def test_a_thing_not_a_colour_is_a_change_with_the_thing_as_prompt() -> None:
    result = plan("将上衣更换为蓝色的牛仔夹克")
    assert [c.command for c in result.commands] == ["change"]
    assert result.commands[0].paras[0] == ("Upper-clothes",)
    # The new garment's own words ("夹克") are what it becomes, not a second target.
    assert "Dress" not in result.commands[0].paras[0]


def test_a_label_the_image_lacks_is_never_emitted_and_the_clause_is_reported() -> None:
    result = plan("remove the hat and make the shirt white", labels=["Background", "Upper-clothes", "Face"])
    assert result.wire() == [{"command": "recolor", "paras": [["Upper-clothes"], "white"]}]
    assert len(result.not_understood) == 1
    missing = result.not_understood[0]
    assert missing.clause == "remove the hat"
    assert "Hat" in missing.reason and "Upper-clothes" in missing.reason


def test_chinese_missing_label_is_reported_in_chinese() -> None:
    result = plan("把帽子去掉", labels=["Background", "Face"])
    assert result.commands == []
    assert "没有Hat" in result.not_understood[0].reason


def test_a_clause_it_cannot_read_is_reported_by_name_not_guessed() -> None:
    result = plan("make the shirt white, and frobnicate the quux")
    assert result.wire() == [{"command": "recolor", "paras": [["Upper-clothes"], "white"]}]
    assert [n.clause for n in result.not_understood] == ["frobnicate the quux"]
    assert "frobnicate" in result.reply


def test_face_commands_need_a_face() -> None:
    result = plan("make her smile", labels=["Background", "Hair"])
    assert result.commands == []
    assert "Face" in result.not_understood[0].reason


def test_this_means_the_selection_when_the_person_drew_one() -> None:
    assert plan("make this white", labels=["Selection"]).wire() == [
        {"command": "recolor", "paras": [["Selection"], "white"]}]
    assert plan("把选中区域模糊一点", labels=["Selection", "Background"]).wire() == [
        {"command": "blur", "paras": [["Selection"], 0.25]}]


def test_every_emitted_command_is_valid_for_the_image() -> None:
    requests = ["make the shirt white", "把背景换成海滩，去掉包，头发染成金色", "blur everything except nothing",
                "make the skirt red", "戴上墨镜", "增加阳光效果", "make the dress blue"]
    for labels in (HUMAN, ["Background", "Face"], ["Selection"], []):
        for request in requests:
            result = plan(request, labels)
            wire = result.wire()
            assert not validate(wire, labels).rejections
            for command in result.commands:
                for target in command.targets():
                    assert target in labels


def test_overlong_requests_are_refused_politely() -> None:
    result = plan("make it brighter " * 1000)
    assert result.commands == []
    assert "characters" in result.not_understood[0].reason


def test_reply_lists_the_commands_in_the_persons_language() -> None:
    assert plan("把背景虚化").reply.startswith("我会这样修改")
    assert plan("blur the background").reply.startswith("Here is what I will do")
    assert detect_language("make it 亮") == "zh"


def test_an_elliptical_second_clause_keeps_its_own_colour_and_part() -> None:
    assert plan("make the hair blue and the pants red").wire() == [
        {"command": "recolor", "paras": [["Hair"], "blue"]},
        {"command": "recolor", "paras": [["Pants"], "red"]},
    ]
    result = plan("make the hair blue and the pants red", labels=["Background", "Hair"])
    assert result.wire() == [{"command": "recolor", "paras": [["Hair"], "blue"]}]
    assert "Pants" in result.not_understood[0].reason
