"""Commands as people read them, in both languages."""

from __future__ import annotations

from core.describe import describe


def test_each_command_reads_as_a_sentence_fragment() -> None:
    assert describe({"command": "recolor", "paras": [["Upper-clothes"], "white"]}) == "recolor Upper-clothes → white"
    assert describe({"command": "adjust", "paras": ["brightness", 0.3, []]}) == "adjust brightness +0.3 on the whole image"
    assert describe({"command": "adjust", "paras": ["warmth", -0.2, ["Hair"]]}, "zh") == "调整色温 -0.2（Hair）"
    assert describe({"command": "blur", "paras": [["Background"], 0.5]}) == "blur Background (0.5)"
    assert describe({"command": "change", "paras": [["Background", "Hat"], "beach"]}) == "change Background, Hat → “beach”"
    assert describe({"command": "face", "paras": ["smile"]}, "zh") == "修饰面部：“smile”"


def test_malformed_items_are_shown_not_hidden() -> None:
    assert describe({"command": "adjust", "paras": ["brightness"]}) == '{"command": "adjust", "paras": ["brightness"]}'
    assert describe("rm -rf /") == '"rm -rf /"'
