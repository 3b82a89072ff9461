"""The dataset checks on hand-made rows: each passes a good row and fails a bad one with a reason that says why."""

from __future__ import annotations

import json

import pytest

from core.planners import make_planner
from core.rules import RULES_FILE, parse_rules
from finetune.dataset_checks import (
    CHECK_NAMES,
    check_row,
    parse_output,
    planner_plan,
    round_trip_check,
)
from finetune.dataset_rows import DatasetRow

LABELS = ("Background", "Hair", "Face", "Upper-clothes", "Pants")


def _row(commands: list[dict], labels: tuple[str, ...] = LABELS, request: str = "make the hair red",
         **checks: bool | str) -> DatasetRow:
    return DatasetRow(request=request, language="en", labels=labels, commands=tuple(commands), checks=checks)


def test_a_valid_row_passes_labels_contract_and_merge() -> None:
    row = check_row(_row([{"command": "change", "paras": [["Background"], "beach"]},
                          {"command": "change", "paras": [["Upper-clothes"], "white shirt"]},
                          {"command": "adjust", "paras": ["brightness", 0.3, []]}]))
    assert row.checks == {"labels": True, "contract": True, "merge": True}
    assert row.passed
    assert set(row.checks) <= set(CHECK_NAMES)


def test_a_label_no_segmenter_produces_fails_labels_and_names_it() -> None:
    row = check_row(_row([{"command": "recolor", "paras": [["Hair"], "red"]}], labels=(*LABELS, "Tail")))
    assert row.failed_checks == {"labels": "Label 'Tail' is not a part any segmenter produces."}


def test_selection_is_a_label_and_whole_is_not() -> None:
    selected = check_row(_row([{"command": "blur", "paras": [["Selection"], 0.5]}], labels=("Selection",)))
    assert selected.passed
    whole = check_row(_row([{"command": "style", "paras": ["oil painting"]}], labels=("Whole", "Background")))
    assert "'Whole'" in whole.failed_checks["labels"]
    assert whole.checks["contract"] is True  # the whole image needs no label: style has no targets


def test_a_label_listed_twice_fails_labels() -> None:
    row = check_row(_row([{"command": "recolor", "paras": [["Hair"], "red"]}], labels=("Hair", "Face", "Hair")))
    assert row.failed_checks["labels"] == "Label 'Hair' is listed more than once."


def test_contract_failures_carry_the_validators_reason() -> None:
    missing = check_row(_row([{"command": "recolor", "paras": [["Hair"], "red"]},
                              {"command": "change", "paras": [["Skin"], "tanned"]}]))
    assert missing.failed_checks["contract"].startswith("Command 2: This image has no 'Skin'")
    unknown = check_row(_row([{"command": "zoom", "paras": [2]}]))
    assert "'zoom' is not a command" in unknown.failed_checks["contract"]
    no_face = check_row(_row([{"command": "face", "paras": ["smile"]}], labels=("Background", "Hair")))
    assert "needs a Face" in no_face.failed_checks["contract"]
    out_of_range = check_row(_row([{"command": "blur", "paras": [["Background"], 0]}]))
    assert "outside (0, 1]" in out_of_range.failed_checks["contract"]


def test_an_empty_command_array_fails_the_contract() -> None:
    row = check_row(_row([]))
    assert "no commands" in row.failed_checks["contract"]


def test_merge_fails_when_summed_amounts_would_be_clamped() -> None:
    row = check_row(_row([{"command": "adjust", "paras": ["brightness", 0.8, []]},
                          {"command": "adjust", "paras": ["brightness", 0.5, []]},
                          {"command": "adjust", "paras": ["contrast", 0.9, []]}]))
    assert row.checks["contract"] is True
    assert row.failed_checks == {"merge": "The 'adjust' brightness amounts add up to 1.3, which merging clamps to 1."}
    different_targets = check_row(_row([{"command": "adjust", "paras": ["brightness", 0.8, []]},
                                        {"command": "adjust", "paras": ["brightness", 0.8, ["Hair"]]}]))
    assert different_targets.passed  # they do not merge, so nothing is clamped


def test_merge_fails_when_joined_prompts_outgrow_the_text_limit() -> None:
    long_prompt = "x" * 300
    row = check_row(_row([{"command": "change", "paras": [["Background"], long_prompt]},
                          {"command": "change", "paras": [["Hair"], "y" * 300]}]))
    assert row.checks["contract"] is True
    assert "at most 500" in row.failed_checks["merge"]


def test_merge_fails_when_a_merge_rule_would_drop_targets() -> None:
    data = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    data["commands"]["remove"]["merge"] = {}  # a rules file that merges removes but keeps only the first's targets
    rules = parse_rules(data)
    row = check_row(_row([{"command": "remove", "paras": [["Hair"]]}, {"command": "remove", "paras": [["Pants"]]}]),
                    rules)
    assert row.failed_checks == {"merge": "Merging the 'remove' commands loses target(s) Pants."}


def test_an_unparsed_row_skips_contract_and_merge_and_drops_stale_outcomes() -> None:
    reason = parse_output("Sure! I will make it red.")
    assert isinstance(reason, str) and "no JSON array" in reason
    row = check_row(_row([], parse=reason, contract=True, merge=True))
    assert row.failed_checks == {"parse": reason}
    assert "contract" not in row.checks and "merge" not in row.checks


def test_round_trip_with_the_rule_planner() -> None:
    plan = planner_plan(make_planner("rules"))
    good = _row([{"command": "recolor", "paras": [["Hair"], "red"]},
                 {"command": "blur", "paras": [["Background"], 0.6]}],
                request="make the hair red and blur the background")
    assert round_trip_check(good, plan).checks["round_trip"] is True
    wrong_target = _row([{"command": "recolor", "paras": [["Pants"], "red"]}])
    assert round_trip_check(wrong_target, plan).failed_checks["round_trip"] == (
        "The request reads back with 'recolor' targets Hair instead of Pants.")


def test_round_trip_compares_targets_as_sets_per_type_and_names_missing_and_extra_types() -> None:
    row = _row([{"command": "recolor", "paras": [["Hair", "Pants"], "red"]},
                {"command": "face", "paras": ["smile"]}])
    split = [{"command": "recolor", "paras": [["Pants"], "crimson"]},
             {"command": "recolor", "paras": [["Hair"], "red"]},
             {"command": "face", "paras": ["a big smile"]}]
    assert round_trip_check(row, lambda request, labels: split).checks["round_trip"] is True
    other = [{"command": "recolor", "paras": [["Hair", "Pants"], "red"]}, {"command": "style", "paras": ["anime"]}]
    reason = round_trip_check(row, lambda request, labels: other).failed_checks["round_trip"]
    assert reason == "The request reads back with no 'face' command; an extra 'style' command."


def test_round_trip_gives_the_plan_the_rows_request_and_labels() -> None:
    seen = []
    row = _row([{"command": "recolor", "paras": [["Hair"], "red"]}])
    round_trip_check(row, lambda request, labels: seen.append((request, tuple(labels))) or [])
    assert seen == [("make the hair red", LABELS)]


@pytest.mark.parametrize("labels", [(), ("Selection",)])
def test_whole_image_commands_pass_without_parts(labels: tuple[str, ...]) -> None:
    row = check_row(_row([{"command": "adjust", "paras": ["warmth", 0.2, []]}, {"command": "style", "paras": ["film"]}],
                         labels=labels))
    assert row.passed
