"""Commands as people read them, in both languages: sentences, never the wire format's JSON."""

from __future__ import annotations

from core.describe import describe


def test_each_command_reads_as_a_sentence() -> None:
    assert describe({"command": "recolor", "paras": [["Upper-clothes"], "white"]}) == \
        "Recolor the Upper-clothes to white"
    assert describe({"command": "adjust", "paras": ["brightness", 0.3, []]}) == "Brighten the whole image (+0.3)"
    assert describe({"command": "adjust", "paras": ["brightness", -0.6, ["Selection"]]}) == \
        "Darken the selection (-0.6)"
    assert describe({"command": "adjust", "paras": ["warmth", -0.2, ["Hair"]]}, "zh") == "让Hair更冷（-0.2）"
    assert describe({"command": "blur", "paras": [["Background"], 0.5]}) == "Blur the Background (strength 0.5)"
    assert describe({"command": "change", "paras": [["Background", "Hat"], "beach"]}) == \
        "Repaint the Background and Hat as “beach”"
    assert describe({"command": "face", "paras": ["smile"]}, "zh") == "修饰面部：“smile”"
    assert describe({"command": "remove", "paras": [["Selection"]]}, "zh") == "去除选区"


def test_malformed_items_say_what_they_are_without_json() -> None:
    assert describe({"command": "adjust", "paras": ["brightness"]}) == "“adjust” with parameters it does not take"
    assert describe({"command": "paint", "paras": []}) == "“paint”, which is not a command ChatEdit knows"
    for item in ("rm -rf /", {"raw": [1, 2]}, None):
        text = describe(item)
        assert text == "something that is not an edit command" and "{" not in text and "[" not in text
