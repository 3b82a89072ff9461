"""The command contract of ../shared/spec/commands.md, as the validator, merger and prompts apply it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from core.commands import (
    Command,
    CommandsNotFound,
    execution_plan,
    extract_commands,
    merge,
    order,
    resolve_params,
    validate,
    validate_item,
)
from core.prompting import json_schema, system_prompt
from core.rules import load_rules

LABELS = {"Background", "Hair", "Upper-clothes", "Face", "Pants", "Selection"}
SEED = Path(__file__).parents[2] / "shared" / "data" / "seed_chat_dataset.json"


def _reason(item: object, labels: set[str] = LABELS) -> str:
    outcome = validate_item(item, labels)
    assert isinstance(outcome, str), f"expected a rejection, got {outcome}"
    return outcome


def test_the_rules_file_matches_the_spec_table() -> None:
    rules = load_rules()
    assert {n: r.priority for n, r in rules.commands.items()} == {
        "remove": 6, "change": 5, "face": 4, "instruct": 3, "style": 2, "recolor": 1, "adjust": 0, "blur": 0,
        "advice": -1}
    assert {n for n, r in rules.commands.items() if r.combine == "always"} == {"remove", "change", "face", "style"}
    assert rules.commands["adjust"].combine == "when_equal" and rules.commands["adjust"].equal == ("property", "targets")
    assert not rules.commands["advice"].executable
    assert rules.templates["inpaint"]["steps"] == 40 and rules.templates["inpaint"]["strength"] == 0.6
    assert rules.templates["face"]["strength"] == 0.2 and rules.templates["beauty"] == {"strength": 0.25,
                                                                                          "cfg_scale": 5.0}


def test_valid_commands_pass() -> None:
    items = [
        {"command": "change", "paras": [["Background", "Upper-clothes"], "blue sky, white T-shirt"]},
        {"command": "face", "paras": ["bigger smile"]},
        {"command": "adjust", "paras": ["brightness", 0.3, []]},
        {"command": "recolor", "paras": [["Pants"], "红色"]},
        {"command": "blur", "paras": [["Background"], 1]},
        {"command": "remove", "paras": [["Selection"]]},
    ]
    result = validate(items, LABELS)
    assert result.rejections == []
    assert [c.command for c in result.commands] == ["change", "face", "adjust", "recolor", "blur", "remove"]
    assert result.commands[0].to_wire() == items[0]


@pytest.mark.parametrize(("item", "reason"), [
    ({"command": "paint", "paras": [["Hair"], "red"]}, "'paint' is not a command; use one of remove, change"),
    ({"command": "rm -rf /", "paras": []}, "'rm -rf /' is not a command"),
    ("change everything", "This item is not a command object."),
    ({"command": "change", "paras": [["Hair"]]}, "'change' takes 2 parameter(s)"),
    ({"command": "change", "paras": "Hair"}, "needs its parameters as a list"),
    ({"command": "change", "paras": [["Hair"], "x"], "shell": "ls"}, "unexpected fields shell"),
    ({"command": "change", "paras": ["Hair", "red hair"]}, "'change' targets must be a list of labels."),
    ({"command": "change", "paras": [[], "red hair"]}, "must name at least one part"),
    ({"command": "change", "paras": [["Hair"], ""]}, "'change' prompt must be non-empty text."),
    ({"command": "change", "paras": [["Hair"], "x" * 501]}, "is 501 characters long; at most 500"),
    ({"command": "change", "paras": [["Skin"], "smooth"]}, "This image has no 'Skin'; its parts are Background"),
    ({"command": "adjust", "paras": ["loudness", 0.2, []]}, "'adjust' property must be one of brightness"),
    ({"command": "adjust", "paras": ["brightness", 1.5, []]}, "'adjust' amount 1.5 is outside [-1, 1]."),
    ({"command": "adjust", "paras": ["brightness", True, []]}, "'adjust' amount must be a number."),
    ({"command": "blur", "paras": [["Background"], 0]}, "'blur' strength 0 is outside (0, 1]."),
    ({"command": "recolor", "paras": [["Hair"], "blurple"]}, "blurple"),
])
def test_each_rule_rejects_with_a_reason(item: object, reason: str) -> None:
    assert reason in _reason(item)


def test_face_needs_a_face() -> None:
    assert _reason({"command": "face", "paras": ["smile"]}, {"Background", "Hair"}) == (
        "'face' needs a Face in the image, and none was found.")


def test_the_thesis_merge_example() -> None:
    commands = validate([
        {"command": "change", "paras": [["Background"], "blue sky"]},
        {"command": "advice", "paras": ["try a warmer light"]},
        {"command": "change", "paras": [["Upper-clothes", "Background"], "white T-shirt"]},
    ], LABELS).commands
    runnable, advice = execution_plan(commands)
    assert [c.to_wire() for c in runnable] == [
        {"command": "change", "paras": [["Background", "Upper-clothes"], "blue sky, white T-shirt"]}]
    assert [c.to_wire() for c in advice] == [{"command": "advice", "paras": ["try a warmer light"]}]


def test_adjust_merges_only_when_property_and_targets_are_equal_and_clamps() -> None:
    cmds = [Command("adjust", ("brightness", 0.7, ())), Command("adjust", ("contrast", 0.2, ())),
            Command("adjust", ("brightness", 0.6, ())), Command("adjust", ("brightness", 0.1, ("Hair",)))]
    assert merge(cmds) == [Command("adjust", ("brightness", 1.0, ())), Command("adjust", ("contrast", 0.2, ())),
                           Command("adjust", ("brightness", 0.1, ("Hair",)))]


def test_order_is_by_priority_and_stable() -> None:
    cmds = [Command("blur", (("Background",), 0.5)), Command("adjust", ("warmth", 0.2, ())),
            Command("remove", (("Selection",),)), Command("recolor", (("Hair",), "red"))]
    assert [c.command for c in order(cmds)] == ["remove", "recolor", "blur", "adjust"]


def test_parameter_precedence_command_over_person_over_template_over_default() -> None:
    change = Command("change", (("Hair",), "red hair"))
    assert resolve_params(change)["steps"] == 40                                    # template
    assert resolve_params(change)["seed"] == -1                                     # default
    assert resolve_params(change, user_settings={"steps": 25})["steps"] == 25       # person
    assert resolve_params(change, user_settings={"steps": 25}, command_params={"steps": 10})["steps"] == 10
    assert resolve_params(Command("face", ("smile",)))["strength"] == 0.2


def test_extraction_from_prose_fences_and_garbage() -> None:
    reply = 'Sure! Here you go:\n```json\n[{"command": "face", "paras": ["smile"]}]\n```\nEnjoy [1].'
    assert extract_commands(reply) == [{"command": "face", "paras": ["smile"]}]
    assert extract_commands("Nothing to do: []") == []
    assert extract_commands('[1, 2] then [{"command": "x", "paras": []}]') == [{"command": "x", "paras": []}]
    with pytest.raises(CommandsNotFound):
        extract_commands("I changed the background to blue.")
    with pytest.raises(CommandsNotFound):
        extract_commands('[{"command": "change", "paras": [["Hair"], "red"]')


def test_json_schema_lists_exactly_this_images_labels_and_checks_like_the_validator() -> None:
    schema = json_schema(LABELS)
    jsonschema.Draft202012Validator.check_schema(schema)
    check = jsonschema.Draft202012Validator(schema)
    good = [{"command": "change", "paras": [["Hair"], "red"]}, {"command": "adjust", "paras": ["warmth", -0.5, []]}]
    assert check.is_valid(good)
    for bad in ([{"command": "change", "paras": [["Skin"], "x"]}], [{"command": "blur", "paras": [["Hair"], 0]}],
                [{"command": "adjust", "paras": ["brightness", 2, []]}], [{"command": "paint", "paras": []}],
                [{"command": "face", "paras": ["smile", "extra"]}]):
        assert not check.is_valid(bad), bad
    change = next(s for s in schema["items"]["anyOf"] if s["properties"]["command"]["const"] == "change")
    assert change["properties"]["paras"]["prefixItems"][0]["items"]["enum"] == sorted(LABELS)
    no_face = json_schema({"Background"})
    assert "face" not in {s["properties"]["command"]["const"] for s in no_face["items"]["anyOf"]}


def test_system_prompt_in_both_languages_names_labels_and_commands() -> None:
    en = system_prompt({"Background", "Hair", "Face"}, "en")
    zh = system_prompt({"Background", "Hair", "Face"}, "zh")
    for prompt in (en, zh):
        assert "Background, Face, Hair" in prompt
        for name in load_rules().names:
            assert f"- {name}(" in prompt
    assert "planner" in en and "规划器" in zh
    assert "- face(" not in system_prompt({"Background"}, "en")


@pytest.mark.skipif(not SEED.is_file(), reason=f"the seed dataset is not at {SEED} (../shared beside the checkout)")
def test_the_seed_dataset_is_judged_item_by_item() -> None:
    samples = json.loads(SEED.read_text(encoding="utf-8"))
    unparsable = valid = rejected = fenced = 0
    reasons: set[str] = set()
    for sample in samples:
        fenced += sample["output"].lstrip().startswith("```")
        labels = {line.split(". ", 1)[1].strip() for line in sample["history"][0][1].splitlines()[1:] if ". " in line}
        try:
            items = extract_commands(sample["output"])
        except CommandsNotFound:
            unparsable += 1
            continue
        result = validate(items, labels)
        valid += len(result.commands)
        rejected += len(result.rejections)
        reasons.update(r.reason.split(";")[0] for r in result.rejections)
    assert len(samples) == 2916
    assert fenced == 4 and unparsable == 0, "the fenced outputs (plain json.loads fails on them) are extracted"
    assert valid > 4000 and rejected > 0
    assert any("no 'Skin'" in r or "no 'Makeup'" in r for r in reasons), reasons


def test_system_prompt_shows_the_format_with_single_braces() -> None:
    from core.prompting import system_prompt

    for language in ("en", "zh"):
        text = system_prompt(["Background"], language)
        assert '{"command": ' in text and "{{" not in text


def test_an_answer_nested_deeper_than_the_json_decoder_can_go_is_not_commands_not_a_crash() -> None:
    """A freely decoding model can write "[[[[…" for hundreds of tokens: an evaluation or a plan job must score it
    as unparsable, not fail with RecursionError."""
    deep = "[" * 5000 + "]" * 5000
    assert extract_commands(deep) == [], "the innermost [] is the only array that could be commands"
    with pytest.raises(CommandsNotFound):
        extract_commands("[" * 5000 + "1" + "]" * 5000)
    assert extract_commands(deep[:4000] + ' [{"command": "advice", "paras": ["ok"]}]') == [
        {"command": "advice", "paras": ["ok"]}]
