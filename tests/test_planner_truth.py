"""The rule planner says what is true: nothing selected, no parts to find, a language it does not read,
and one adjustment said twice."""

from __future__ import annotations

import pytest

from core.planners.base import unsupported_language
from core.planners.rule_planner import RulePlanner


@pytest.fixture(scope="module")
def planner() -> RulePlanner:
    return RulePlanner()


def test_with_nothing_selected_the_reply_says_so(planner: RulePlanner) -> None:
    for labels in ([], ["Background", "Hair"]):
        result = planner.plan("make the selection red", labels=labels)
        assert result.commands == []
        assert result.reply.startswith("Nothing is selected") and "its parts are" not in result.reply
    assert planner.plan("把选区变成红色", labels=[]).reply.startswith("还没有选中任何区域")


def test_without_parts_a_part_is_selected_by_hand_and_the_request_rephrased(planner: RulePlanner) -> None:
    reply = planner.plan("make the shirt red", labels=[]).reply
    assert "Select it with the brush or a click under Selection tools, then say “make the selection red”." in reply
    reply = planner.plan("make the shirt and the pants red", labels=["Selection"]).reply
    assert "the Upper-clothes and Pants" in reply and "Select them" in reply and "“make the selection red”" in reply
    assert "“把选区变成红色”" in planner.plan("把上衣变成红色", labels=[]).reply
    # With parts found, a missing one is still named against the parts there are.
    assert "its parts are Background, Hair" in planner.plan("make the shirt red", labels=["Background", "Hair"]).reply


@pytest.mark.parametrize("request_text", ["rends la chemise rouge", "シャツを赤くして", "сделай рубашку красной",
                                          "haz la camisa roja"])
def test_an_unsupported_language_is_told_which_languages_are_understood(planner: RulePlanner,
                                                                        request_text: str) -> None:
    result = planner.plan(request_text, labels=["Upper-clothes"])
    assert result.commands == []
    assert "English and Chinese" in result.reply and "英文和中文" in result.reply


def test_english_chinese_and_both_mixed_are_not_foreign(planner: RulePlanner) -> None:
    for text in ("make it brighter", "把背景换成蓝天白云", "make the shirt 红色", "make la background red"):
        assert not unsupported_language(text)
    assert [c.to_wire() for c in planner.plan("make the shirt 红色", labels=["Upper-clothes"]).commands] == [
        {"command": "recolor", "paras": [["Upper-clothes"], "红色"]}]


def test_darker_much_darker_is_one_stronger_adjustment(planner: RulePlanner) -> None:
    wire = [c.to_wire() for c in planner.plan("make it darker, much darker", labels=[]).commands]
    assert wire == [{"command": "adjust", "paras": ["brightness", -0.6, []]}]
    plain = planner.plan("make it darker", labels=[]).commands[0].paras[1]
    assert wire[0]["paras"][1] < plain < 0
    # Different changes stay separate: the other direction, or another property.
    assert len(planner.plan("make it brighter, then darker", labels=[]).commands) == 2
    assert len(planner.plan("make it darker, more contrast", labels=[]).commands) == 2


def test_the_validator_words_a_missing_selection_and_a_missing_segmentation_the_same_way() -> None:
    from core.commands import validate
    from core.rules import load_rules

    rules = load_rules()
    item = {"command": "recolor", "paras": [["Selection"], "red"]}
    for labels in ([], ["Hair"]):
        (rejection,) = validate([item], labels, rules).rejections
        assert rejection.reason == "Nothing is selected: select an area under Selection tools first."
    (rejection,) = validate([{"command": "recolor", "paras": [["Hair"], "red"]}], [], rules).rejections
    assert "no parts were found" in rejection.reason and "none" not in rejection.reason
