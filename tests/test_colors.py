"""The colour words of the contract: CSS names, hex codes, Chinese words, and refusals."""

from __future__ import annotations

import pytest

from core.colors import COLOR_WORDS_ZH, InvalidColor, parse_color


@pytest.mark.parametrize(("text", "rgb"), [
    ("navy", (0, 0, 128)),
    ("White", (255, 255, 255)),
    ("  DodgerBlue ", (30, 144, 255)),
    ("light blue", (173, 216, 230)),
    ("light-gray", (211, 211, 211)),
])
def test_css_names_are_case_and_space_insensitive(text: str, rgb: tuple[int, int, int]) -> None:
    assert parse_color(text) == rgb


@pytest.mark.parametrize(("text", "rgb"), [
    ("#1E90FF", (30, 144, 255)),
    ("#1e90ff", (30, 144, 255)),
    ("#f00", (255, 0, 0)),
    ("#000000", (0, 0, 0)),
])
def test_hex_codes(text: str, rgb: tuple[int, int, int]) -> None:
    assert parse_color(text) == rgb


@pytest.mark.parametrize("word", list(COLOR_WORDS_ZH))
def test_every_chinese_word_with_and_without_se(word: str) -> None:
    assert parse_color(word) == parse_color(word + "色") == COLOR_WORDS_ZH[word]


def test_chinese_words_have_the_right_hues() -> None:
    red, blue, white, black = (parse_color(w) for w in ("红色", "蓝", "白色", "黑"))
    assert red[0] > max(red[1:]) and blue[2] > max(blue[:2])
    assert white == (255, 255, 255) and black == (0, 0, 0)
    assert set(COLOR_WORDS_ZH) == set("白黑红橙黄绿青蓝紫粉灰棕金银")


@pytest.mark.parametrize("text", ["blurple", "", "色", "#12345", "#GGGGGG", "rgb(1,2,3)", "红蓝", "0000FF", "navy!"])
def test_anything_else_is_refused_with_a_sentence(text: str) -> None:
    with pytest.raises(InvalidColor) as caught:
        parse_color(text)
    assert caught.value.text == text
    assert isinstance(caught.value, ValueError)
    assert "not a colour I know" in str(caught.value) and "#1E90FF" in str(caught.value)


def test_non_strings_are_refused() -> None:
    with pytest.raises(InvalidColor):
        parse_color(None)  # type: ignore[arg-type]
