"""The two schemas derived from the rules: the positional wire schema and OpenAI's strict one, and the way back.

``openai_strict_schema`` must stay inside OpenAI's strict subset (checked by the same
function the fake server refuses requests with), offer exactly the commands and labels
the wire schema offers, and every named command must come back through ``named_to_wire``
as a wire command the validator accepts.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from core.colors import parse_color
from core.commands import validate
from core.prompting import (
    HEX_COLOR_PATTERN,
    color_words,
    json_schema,
    named_to_wire,
    openai_strict_schema,
)
from core.rules import ParaRule, load_rules
from tests.openai_fake_server import strict_schema_problems

RULES = load_rules()
ALL_LABELS = [*RULES.default_labels, RULES.selection_label]
LABELS = ["Background", "Face", "Hair", "Upper-clothes"]


def sample(para: ParaRule, labels: list[str]) -> Any:
    """A valid value for ``para``, read from the rules."""
    return {"targets": lambda: labels[:2], "text": lambda: "a calm blue sky", "color": lambda: "navy",
            "enum": lambda: para.enum[-1], "number": lambda: para.max}[para.type]()


def named(name: str, labels: list[str]) -> dict[str, Any]:
    return {"command": name, **{p.name: sample(p, labels) for p in RULES.commands[name].paras}}


def command_schemas(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["properties"]["command"]["enum"][0]: c for c in schema["properties"]["commands"]["items"]["anyOf"]}


@pytest.mark.parametrize("labels", [ALL_LABELS, LABELS, ["Background"], ["Selection"], []])
@pytest.mark.parametrize("advice", [False, True])
def test_the_strict_schema_is_inside_openais_subset(labels: list[str], advice: bool) -> None:
    schema = openai_strict_schema(labels, advice=advice)
    assert strict_schema_problems(schema) == []
    jsonschema.Draft202012Validator.check_schema(schema)
    assert list(schema["properties"]) == (["reply", "advice", "commands"] if advice else ["reply", "commands"])


def test_the_positional_schema_is_not_and_that_is_why_there_are_two() -> None:
    wire = {k: v for k, v in json_schema(LABELS).items() if k not in ("$schema", "title")}
    wrapped = {"type": "object", "properties": {"reply": {"type": "string"}, "commands": wire},
               "required": ["reply", "commands"], "additionalProperties": False}
    problems = " ".join(strict_schema_problems(wrapped))
    assert "prefixItems" in problems and "const" in problems


@pytest.mark.parametrize("labels", [ALL_LABELS, LABELS, ["Background"], []])
def test_both_schemas_offer_the_same_commands(labels: list[str]) -> None:
    strict = set(command_schemas(openai_strict_schema(labels)))
    wire = {c["properties"]["command"]["const"] for c in json_schema(labels)["items"]["anyOf"]}
    # With no labels the wire schema keeps commands whose targets cannot be filled (an empty enum); strict drops them.
    unfillable = {n for n, r in RULES.commands.items()
                  if not labels and any(p.type == "targets" and not p.allow_empty for p in r.paras)}
    assert strict == wire - unfillable
    assert ("face" in strict) == ("Face" in labels)


def test_the_labels_enum_is_exactly_this_images_labels() -> None:
    for labels in (LABELS, ALL_LABELS, ["Selection", "Hair"]):
        for name, command in command_schemas(openai_strict_schema(labels)).items():
            for para in RULES.commands[name].paras:
                if para.type == "targets":
                    assert command["properties"][para.name]["items"]["enum"] == sorted(labels)


def test_commands_carry_their_paras_by_name_in_the_rules_order() -> None:
    for name, command in command_schemas(openai_strict_schema(ALL_LABELS)).items():
        expected = ["command", *(p.name for p in RULES.commands[name].paras)]
        assert list(command["properties"]) == expected == command["required"]
        assert command["additionalProperties"] is False


@pytest.mark.parametrize("name", list(RULES.commands))
def test_every_command_round_trips_named_to_wire_to_valid(name: str) -> None:
    item = named(name, ALL_LABELS)
    jsonschema.Draft202012Validator(openai_strict_schema(ALL_LABELS)).validate({"reply": "", "commands": [item]})
    wire = named_to_wire(item)
    assert wire == {"command": name, "paras": [item[p.name] for p in RULES.commands[name].paras]}
    jsonschema.Draft202012Validator(json_schema(ALL_LABELS)).validate([wire])
    outcome = validate([wire], ALL_LABELS)
    assert outcome.rejections == [] and [c.to_wire() for c in outcome.commands] == [wire]


def test_the_strict_schema_refuses_what_the_validator_refuses() -> None:
    check = jsonschema.Draft202012Validator(openai_strict_schema(LABELS))
    bad = [
        {"command": "change", "targets": ["Skin"], "prompt": "tan"},
        {"command": "change", "targets": [], "prompt": "tan"},
        {"command": "blur", "targets": ["Hair"], "strength": 0},
        {"command": "adjust", "property": "brightness", "amount": 2, "targets": []},
        {"command": "adjust", "property": "glow", "amount": 0.2, "targets": []},
        {"command": "recolor", "targets": ["Hair"], "color": "qqq"},
        {"command": "recolor", "targets": ["Hair"], "color": "#12345"},
        {"command": "face", "prompt": "smile", "extra": 1},
        {"command": "face"},
        {"command": "paint", "prompt": "x"},
    ]
    for item in bad:
        assert not check.is_valid({"reply": "", "commands": [item]}), item
        assert validate([named_to_wire(item)], LABELS).commands == [], item


@pytest.mark.parametrize("color", ["white", "navy", "红", "蓝色", "#1E90FF", "#fff"])
def test_colours_the_validator_accepts_pass_the_strict_schema(color: str) -> None:
    check = jsonschema.Draft202012Validator(openai_strict_schema(LABELS))
    item = {"command": "recolor", "targets": ["Hair"], "color": color}
    assert check.is_valid({"reply": "", "commands": [item]})
    assert validate([named_to_wire(item)], LABELS).commands


def test_colour_words_are_the_ones_the_validator_accepts() -> None:
    words = color_words()
    assert all(parse_color(w) for w in words) and "navy" in words and "红色" in words
    assert HEX_COLOR_PATTERN.startswith("^") and HEX_COLOR_PATTERN.endswith("$")  # llama.cpp needs anchors


def test_named_to_wire_leaves_what_it_cannot_convert_for_the_validator() -> None:
    wire = {"command": "face", "paras": ["smile"]}
    assert named_to_wire(wire) is wire
    assert named_to_wire("face") == "face"
    assert named_to_wire({"command": "shell", "cmd": "rm"}) == {"command": "shell", "cmd": "rm"}
    assert named_to_wire({"command": 3}) == {"command": 3}
    # Order comes from the rules, not from the model's key order; unknown fields ride along to be rejected.
    assert named_to_wire({"targets": [], "amount": 0.1, "command": "adjust", "property": "warmth", "x": 1}) == \
        {"command": "adjust", "paras": ["warmth", 0.1, []], "x": 1}
    assert "unexpected fields x" in validate([{"command": "face", "paras": ["a"], "x": 1}], LABELS).rejections[0].reason
