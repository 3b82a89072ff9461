"""Colour words of the command contract: CSS names, hex codes and basic Chinese words.

`recolor` commands come from planners (LLMs or the rule parser) in whatever language the
person wrote, so one parser turns every accepted spelling into an sRGB triple and refuses
everything else with a sentence the person can act on. The validator and the executor
both call `parse_color`, so "valid" and "runnable" mean the same thing.
"""

from __future__ import annotations

import re

from PIL import ImageColor

RGB = tuple[int, int, int]

#: The basic Chinese colour words of the contract (with or without a trailing 色).
COLOR_WORDS_ZH: dict[str, RGB] = {
    "白": (255, 255, 255),
    "黑": (0, 0, 0),
    "红": (220, 20, 60),
    "橙": (255, 140, 0),
    "黄": (255, 215, 0),
    "绿": (34, 139, 34),
    "青": (0, 170, 170),
    "蓝": (30, 90, 220),
    "紫": (128, 0, 128),
    "粉": (255, 160, 190),
    "灰": (128, 128, 128),
    "棕": (139, 69, 19),
    "金": (212, 175, 55),
    "银": (192, 192, 192),
}

_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_SEPARATORS = re.compile(r"[\s_\-]+")


class InvalidColor(ValueError):
    """A colour the contract does not accept; `text` is what was given."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(
            f"{text!r} is not a colour I know; use a colour name like navy, "
            "a hex code like #1E90FF, or 红/蓝/绿/白/黑…"
        )


def parse_color(text: str) -> tuple[int, int, int]:
    """Return the sRGB triple for a CSS name, `#RGB`/`#RRGGBB`, or a Chinese colour word.

    Names are case-insensitive and may be written with spaces ("light blue"), since
    people and language models rarely write CSS identifiers exactly.
    """
    if not isinstance(text, str):
        raise InvalidColor(repr(text))
    word = text.strip()
    if _HEX.fullmatch(word):
        return _hex_to_rgb(word)
    zh = word[:-1] if len(word) > 1 and word.endswith("色") else word
    if zh in COLOR_WORDS_ZH:
        return COLOR_WORDS_ZH[zh]
    name = _SEPARATORS.sub("", word).lower()
    if name and name in ImageColor.colormap:
        r, g, b = ImageColor.getrgb(name)[:3]
        return (r, g, b)
    raise InvalidColor(text)


def _hex_to_rgb(code: str) -> RGB:
    digits = code[1:]
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def color_words() -> list[str]:
    """Every colour word the contract accepts, except hex codes: CSS names and the Chinese words (± 色).

    The JSON Schemas and the local planner's grammar list these, so a constrained model
    can only write colours the validator accepts.
    """
    words = sorted(ImageColor.colormap) + [w + s for w in COLOR_WORDS_ZH for s in ("", "色")]
    return [w for w in words if parse_color(w)]
