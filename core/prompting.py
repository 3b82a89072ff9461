"""What planners are told, derived from the rules: the JSON Schemas and the system prompt.

All take the labels present in this image, so a model constrained by a schema can only
name parts the image has, and the prompt lists exactly those parts. Two schemas, one
source (``core/rules.json``):

- :func:`json_schema`: JSON Schema 2020-12 of the wire format itself (positional
  ``paras`` tuples); the local planner's grammar (:mod:`core.planners.constrained`) is
  generated from it.
- :func:`openai_strict_schema`: the same commands in the subset of JSON Schema that
  OpenAI's strict Structured Outputs accept (no ``prefixItems``, ``items: false``,
  ``uniqueItems``, ``const``, ``minLength``/``maxLength``; every object closed and with
  all its properties required; an object at the root). Each command is an object with
  its paras *by name*; :func:`named_to_wire` turns an answer back into the wire format,
  which the validator then checks as it checks every planner's output.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Literal

from core.colors import color_words
from core.rules import CommandRule, ParaRule, Rules, load_rules

Language = Literal["en", "zh"]

#: A hex colour as :func:`core.colors.parse_color` accepts it (``#RGB`` or ``#RRGGBB``), anchored.
HEX_COLOR_PATTERN = "^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"


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


# -- OpenAI strict Structured Outputs -------------------------------------------------------


def _strict_para_schema(para: ParaRule, labels: list[str]) -> dict[str, Any]:
    """A para in OpenAI's strict subset; what it cannot say (text length, blank text) the validator checks."""
    description = para.describe()
    if para.type == "targets":
        schema: dict[str, Any] = {"type": "array", "description": description}
        if labels:
            schema["items"] = {"type": "string", "enum": labels}
            schema["minItems"] = 0 if para.allow_empty else 1
            schema["maxItems"] = len(labels)  # unique targets cannot be more; uniqueItems is not in the subset
        else:  # only the whole image (allow_empty); required targets with no labels are not offered at all
            schema["items"] = {"type": "string"}
            schema["maxItems"] = 0
        return schema
    if para.type == "enum":
        return {"type": "string", "enum": list(para.enum), "description": description}
    if para.type == "number":
        schema = {"type": "number", "description": description}
        if para.min_exclusive is not None:
            schema["exclusiveMinimum"] = para.min_exclusive
        elif para.min is not None:
            schema["minimum"] = para.min
        if para.max is not None:
            schema["maximum"] = para.max
        return schema
    if para.type == "color":
        return {"description": description, "anyOf": [
            {"type": "string", "enum": color_words()},
            {"type": "string", "pattern": HEX_COLOR_PATTERN},
        ]}
    return {"type": "string", "description": description}


def _offerable(rule: CommandRule, labels: list[str]) -> bool:
    """Usable with these labels, and no para that needs a label when there is none."""
    return _usable(rule, labels) and (bool(labels) or all(
        p.type != "targets" or p.allow_empty for p in rule.paras))


def strict_command_schema(rule: CommandRule, labels: list[str]) -> dict[str, Any]:
    """One command as an object: ``command`` (an enum of its one name) first, then its paras by name, in order."""
    properties: dict[str, Any] = {"command": {"type": "string", "enum": [rule.name]}}
    for para in rule.paras:
        if para.name in ("command", "paras"):
            raise ValueError(f"'{rule.name}' has a para named {para.name!r}; named commands cannot tell it apart.")
        properties[para.name] = _strict_para_schema(para, labels)
    return {"type": "object", "description": rule.description, "properties": properties,
            "required": list(properties), "additionalProperties": False}


def openai_strict_schema(labels: Collection[str], rules: Rules | None = None, *,
                         advice: bool = False) -> dict[str, Any]:
    """The answer object for OpenAI strict Structured Outputs: ``{"reply", ["advice",] "commands"}``.

    ``reply`` is the sentence for the person; ``commands`` an array whose items are one of
    the usable commands (:func:`strict_command_schema`), this image's labels as the only
    targets; with ``advice``, a list of suggestion texts (they become ``advice`` commands).
    Keys come in this order, which is the order OpenAI writes them in, so the reply streams first.
    """
    rules = rules or load_rules()
    label_list = sorted(set(labels))
    commands = [strict_command_schema(r, label_list) for r in rules.commands.values() if _offerable(r, label_list)]
    properties: dict[str, Any] = {"reply": {"type": "string"}}
    if advice:
        properties["advice"] = {"type": "array", "items": {"type": "string"}}
    properties["commands"] = {"type": "array", "items": {"anyOf": commands}}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def named_to_wire(item: Any, rules: Rules | None = None) -> Any:
    """A command with named paras (``{"command": "blur", "targets": [...], "strength": 0.5}``) in the wire format.

    The paras are put in the order the rules give them. Nothing is judged here: an item
    that is not a named command of the contract (already ``{"command", "paras"}``, an
    unknown command, not an object) comes back as it is, a missing para is left out and
    an unknown field is kept, so :func:`core.commands.validate` rejects it with its reason.
    """
    rules = rules or load_rules()
    if not isinstance(item, dict) or "paras" in item or not isinstance(item.get("command"), str):
        return item
    rule = rules.commands.get(item["command"])
    if rule is None:
        return item
    names = [p.name for p in rule.paras]
    wire: dict[str, Any] = {"command": rule.name, "paras": [item[n] for n in names if n in item]}
    wire.update({k: v for k, v in item.items() if k != "command" and k not in names})
    return wire


_TEXT = {
    "en": {
        "intro": "You are ChatEdit's planner. Turn the person's request about their photo into edit commands.",
        "labels": "The parts of this image (the only allowed targets): {labels}.",
        "selection": "'{sel}' is the region the person selected with clicks or the brush.",
        "contains": "'{whole}' includes {parts}; target a part alone to change only that part.",
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
        "contains": "'{whole}' 包含 {parts}；只想修改其中一部分时，只以该部分为目标。",
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
    for whole, parts in rules.contains.items():
        inside = [p for p in parts if p in labels]
        if whole in labels and inside:
            lines.append(text["contains"].format(whole=whole, parts=", ".join(inside)))
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
