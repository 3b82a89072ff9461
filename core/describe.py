"""Commands as a person reads them, in English or Chinese: "Recolor the Upper-clothes to white".

Planner replies, the Operation Board, the edit job's progress, the result caption and
the gallery all show commands; one function keeps them saying the same thing, and
never shows a person the wire format's JSON.
"""

from __future__ import annotations

from typing import Any, Literal

Language = Literal["en", "zh"]

SELECTION = "Selection"

#: adjust: property → (what a positive amount does, what a negative one does), each with ``{t}`` for the targets.
_ADJUST = {
    "en": {"brightness": ("Brighten {t}", "Darken {t}"),
           "contrast": ("Raise the contrast of {t}", "Lower the contrast of {t}"),
           "saturation": ("Make {t} more vivid", "Make {t} more muted"),
           "sharpness": ("Sharpen {t}", "Soften {t}"),
           "warmth": ("Make {t} warmer", "Make {t} cooler")},
    "zh": {"brightness": ("调亮{t}", "调暗{t}"),
           "contrast": ("提高{t}的对比度", "降低{t}的对比度"),
           "saturation": ("让{t}更鲜艳", "让{t}更素淡"),
           "sharpness": ("锐化{t}", "柔化{t}"),
           "warmth": ("让{t}更暖", "让{t}更冷")},
}
_TEMPLATES = {
    "en": {"remove": "Remove {t}", "change": "Repaint {t} as “{p}”", "face": "Retouch the face: “{p}”",
           "instruct": "Edit the whole image: “{p}”", "style": "Restyle the whole image as “{p}”",
           "recolor": "Recolor {t} to {p}", "blur": "Blur {t} (strength {p:g})", "advice": "Advice: {p}",
           "adjust": "Adjust the {prop} of {t}"},
    "zh": {"remove": "去除{t}", "change": "把{t}重绘为“{p}”", "face": "修饰面部：“{p}”",
           "instruct": "按指令修改整张图片：“{p}”", "style": "把整张图片改为“{p}”风格",
           "recolor": "把{t}改成{p}", "blur": "模糊{t}（强度 {p:g}）", "advice": "建议：{p}",
           "adjust": "调整{t}的{prop}"},
}


def targets_text(value: Any, language: Language = "en") -> str:
    """"the whole image", "the selection", "the Hair and Upper-clothes" (整张图片, 选区, Hair、Upper-clothes)."""
    if not isinstance(value, list | tuple) or not value:
        return "整张图片" if language == "zh" else "the whole image"
    names = ["选区" if language == "zh" and v == SELECTION else "selection" if v == SELECTION else str(v)
             for v in value]
    if language == "zh":
        return "、".join(names)
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return "the " + joined


def describe(item: Any, language: Language = "en") -> str:
    """One sentence for a command item (wire format); anything else says what it is, never as JSON."""
    if not isinstance(item, dict) or not isinstance(item.get("command"), str) \
            or not isinstance(item.get("paras"), list):
        return _not_a_command(item, language)
    name, paras = item["command"], item["paras"]
    templates = _TEMPLATES[language]
    try:
        if name == "adjust":
            prop, amount, where = str(paras[0]), float(paras[1]), targets_text(paras[2], language)
            pair = _ADJUST[language].get(prop)
            text = (pair[0] if amount >= 0 else pair[1]).format(t=where) if pair else \
                templates["adjust"].format(prop=prop, t=where)
            return f"{text}（{amount:+g}）" if language == "zh" else f"{text} ({amount:+g})"
        if name in ("recolor", "change"):
            return templates[name].format(t=targets_text(paras[0], language), p=paras[1])
        if name == "blur":
            return templates[name].format(t=targets_text(paras[0], language), p=float(paras[1]))
        if name == "remove":
            return templates[name].format(t=targets_text(paras[0], language))
        if name in templates:
            return templates[name].format(p=paras[0])
    except (IndexError, TypeError, ValueError, KeyError):
        pass
    return _not_a_command(item, language)


def _not_a_command(item: Any, language: Language) -> str:
    name = item.get("command") if isinstance(item, dict) else None
    if isinstance(name, str) and name:
        shown = name[:40]
        if name not in _TEMPLATES["en"]:
            return f"“{shown}”, which is not a command ChatEdit knows" if language == "en" else f"“{shown}”（不是已知的命令）"
        return f"“{shown}” with parameters it does not take" if language == "en" else f"“{shown}”（参数不符合这个命令）"
    return "something that is not an edit command" if language == "en" else "一项不是编辑命令的内容"
