"""What planners are told, derived from the rules: the JSON Schema and the system prompt.

Both take the labels present in this image, so a model constrained by the schema can
only name parts the image has, and the prompt lists exactly those parts.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Literal

from core.rules import CommandRule, ParaRule, Rules, load_rules

Language = Literal["en", "zh"]


def _para_schema(para: ParaRule, labels: list[str], rules: Rules) -> dict[str, Any]:
    if para.type == "targets":
        schema: dict[str, Any] = {"type": "array", "items": {"enum": labels}, "uniqueItems": True}
        if not para.allow_empty:
            schema["minItems"] = 1
        return schema
    if para.type == "enum":
        return {"enum": list(para.enum)}
    if para.type == "number":
        schema = {"type": "number", "maximum": para.max}
        if para.min_exclusive is not None:
            schema["exclusiveMinimum"] = para.min_exclusive
        else:
            schema["minimum"] = para.min
        return schema
    # text and colour: the validator checks colour names; the schema bounds the length.
    return {"type": "string", "minLength": 1, "maxLength": rules.text_max_length}


def _usable(rule: CommandRule, labels: Collection[str]) -> bool:
    return all(label in labels for label in rule.requires_labels)


def command_schema(rule: CommandRule, labels: list[str], rules: Rules) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "command": {"const": rule.name},
            "paras": {
                "type": "array",
                "prefixItems": [_para_schema(p, labels, rules) for p in rule.paras],
                "items": False,
                "minItems": len(rule.paras),
                "maxItems": len(rule.paras),
            },
        },
        "required": ["command", "paras"],
        "additionalProperties": False,
    }


def json_schema(labels: Collection[str], rules: Rules | None = None) -> dict[str, Any]:
    """JSON Schema (2020-12) of a command array for this image: its labels are the only allowed targets."""
    rules = rules or load_rules()
    label_list = sorted(set(labels))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ChatEdit commands",
        "type": "array",
        "items": {"anyOf": [command_schema(r, label_list, rules)
                            for r in rules.commands.values() if _usable(r, labels)]},
    }


_TEXT = {
    "en": {
        "intro": "You are ChatEdit's planner. Turn the person's request about their photo into edit commands.",
        "labels": "The parts of this image (the only allowed targets): {labels}.",
        "selection": "'{sel}' is the region the person selected with clicks or the brush.",
        "commands": "Commands (paras are positional):",
        "format": ("Reply with a JSON array of objects {\"command\": NAME, \"paras\": [...]} and nothing else "
                   "is required; prose around it is ignored. Write prompts in English. Use only the commands and "
                   "targets above; if the request cannot be done with them, reply with an 'advice' command "
                   "explaining why."),
        "example": "Example:",
    },
    "zh": {
        "intro": "你是 ChatEdit 的规划器。把用户对照片的修改要求转换成编辑命令。",
        "labels": "这张图片的部分（唯一允许的目标）：{labels}。",
        "selection": "'{sel}' 是用户用点击或画笔选中的区域。",
        "commands": "命令（paras 按位置给出）：",
        "format": ("请回复一个 JSON 数组，每项为 {\"command\": 命令名, \"paras\": [...]}；数组外的文字会被忽略。"
                   "提示词用英文书写。只使用上面的命令和目标；如果无法用它们完成要求，请用 'advice' 命令说明原因。"),
        "example": "示例：",
    },
}


def system_prompt(labels: Collection[str], language: Language = "en", rules: Rules | None = None) -> str:
    """The planner's system prompt in English or Chinese, listing this image's labels and the usable commands."""
    rules = rules or load_rules()
    text = _TEXT[language]
    label_list = sorted(set(labels))
    lines = [text["intro"], text["labels"].format(labels=", ".join(label_list) or "—")]
    if rules.selection_label in labels:
        lines.append(text["selection"].format(sel=rules.selection_label))
    lines.append(text["commands"])
    for rule in rules.commands.values():
        if _usable(rule, labels):
            description = rule.description if language == "en" else rule.description_zh
            lines.append(f"- {rule.signature()}: {description}")
    lines.append(text["format"])
    example_targets = [t for t in ("Background", "Upper-clothes") if t in labels] or label_list[:1]
    if example_targets:
        example = [{"command": "change", "paras": [example_targets, "blue sky, white T-shirt"]}]
        lines += [text["example"], json.dumps(example, ensure_ascii=False)]
    return "\n".join(lines)
