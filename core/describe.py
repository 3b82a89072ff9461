"""Commands as a person reads them, in English or Chinese: "recolor Upper-clothes → white".

Planner replies, the Operation Board and the gallery all show commands; one function
keeps them saying the same thing.
"""

from __future__ import annotations

import json
from typing import Any, Literal

Language = Literal["en", "zh"]

_VERBS = {
    "en": {"remove": "remove", "change": "change", "face": "retouch the face:", "instruct": "instruction:",
           "style": "restyle as", "recolor": "recolor", "adjust": "adjust", "blur": "blur", "advice": "advice:"},
    "zh": {"remove": "去除", "change": "重绘", "face": "修饰面部：", "instruct": "指令：", "style": "风格改为",
           "recolor": "改色", "adjust": "调整", "blur": "模糊", "advice": "建议："},
}
_PROPERTIES_ZH = {"brightness": "亮度", "contrast": "对比度", "saturation": "饱和度", "sharpness": "锐度", "warmth": "色温"}


def _targets(value: Any, language: Language) -> str:
    if not isinstance(value, list) or not value:
        return "整张图片" if language == "zh" else "the whole image"
    return "、".join(map(str, value)) if language == "zh" else ", ".join(map(str, value))


def describe(item: Any, language: Language = "en") -> str:
    """One line for a command item (wire format); anything else is shown as JSON, shortened."""
    if not isinstance(item, dict) or not isinstance(item.get("command"), str) or not isinstance(item.get("paras"), list):
        return json.dumps(item, ensure_ascii=False)[:200]
    name, paras = item["command"], item["paras"]
    verb = _VERBS[language].get(name, name)
    try:
        if name == "recolor":
            return f"{verb} {_targets(paras[0], language)} → {paras[1]}"
        if name == "change":
            return f"{verb} {_targets(paras[0], language)} → “{paras[1]}”"
        if name == "remove":
            return f"{verb} {_targets(paras[0], language)}"
        if name == "blur":
            return f"{verb} {_targets(paras[0], language)} ({paras[1]:g})"
        if name == "adjust":
            prop = _PROPERTIES_ZH.get(paras[0], paras[0]) if language == "zh" else paras[0]
            where = _targets(paras[2], language)
            return f"{verb}{prop} {paras[1]:+g}（{where}）" if language == "zh" else f"{verb} {prop} {paras[1]:+g} on {where}"
        return f"{verb}“{paras[0]}”" if verb.endswith("：") else f"{verb} “{paras[0]}”"
    except (IndexError, TypeError, ValueError):
        return json.dumps(item, ensure_ascii=False)[:200]
