"""Planner metrics on hand-made cases: every error type, the tolerance edges, merged programs, refusals, aggregation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.commands import Command, Rejection
from core.planners.base import PlanResult
from core.rules import load_rules
from finetune.metrics import (
    ERROR_TYPES,
    METRIC_NAMES,
    NONE,
    EvalMetrics,
    ExampleScore,
    InvalidReference,
    aggregate,
    amounts_match,
    colors_match,
    key_words,
    metrics_table,
    percentile,
    produced_items,
    prompts_match,
    score_example,
    score_row,
)

SEED = Path(__file__).parents[2] / "shared" / "data" / "seed_chat_dataset.json"
LABELS = ["Background", "Hair", "Upper-clothes", "Pants", "Face", "Left-arm", "Right-arm"]


def cmd(name: str, *paras: Any) -> dict[str, Any]:
    return {"command": name, "paras": list(paras)}


def score(expected: list[dict[str, Any]], produced: list[Any] | None, *, reply: str | None = None,
          labels: list[str] = LABELS, language: str = "en", **kw: Any) -> ExampleScore:
    return score_example(expected, reply, produced, labels=labels, language=language, **kw)


# -- a right answer, and each kind of wrong one ---------------------------------------------------------------


def test_a_right_program_scores_full_marks_and_no_errors() -> None:
    expected = [cmd("change", ["Background"], "sunset beach"), cmd("face", "bigger smile")]
    s = score(expected, [cmd("face", "Bigger  smile"), cmd("change", ["Background"], "sunset beach")])
    assert (s.parsed, s.schema_valid, s.label_valid, s.valid, s.exact_match, s.type_match) == (True,) * 6
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)
    assert (s.target_accuracy, s.parameter_accuracy) == (1.0, 1.0)
    assert s.errors == [] and s.primary_error is None and s.misses == []


def test_a_reply_without_a_command_array_is_unparsable_and_scores_zero() -> None:
    s = score([cmd("face", "smile")], None, reply="Sure! I will make her smile.")
    assert s.errors == ["unparsable"] and not s.parsed and not s.schema_valid
    assert (s.precision, s.recall, s.f1, s.fn) == (0.0, 0.0, 0.0, 1)
    # An unparsable answer to a request that should be refused is still wrong, not a perfect empty program.
    assert score([], None, reply="no").f1 == 0.0 and score([], None, reply=None).errors == ["unparsable"]


def test_the_reply_is_parsed_when_no_command_list_is_given() -> None:
    reply = 'Here you go:\n```json\n[{"command": "face", "paras": ["smile"]}]\n```'
    assert score([cmd("face", "smile")], None, reply=reply).exact_match


@pytest.mark.parametrize(("item", "error"), [
    (cmd("blurr", ["Background"], 0.5), "unknown_command"),
    ({"paras": [["Hair"]]}, "unknown_command"),
    ("remove the hair", "unknown_command"),
    (cmd("recolor", ["Hair"]), "bad_paras"),
    (cmd("adjust", "brightness", 1.5, []), "bad_paras"),
    (cmd("recolor", ["Hair"], "sparkly"), "bad_paras"),
    (cmd("remove", ["Hat"]), "wrong_label"),
    (cmd("remove", ["Selection"]), "wrong_label"),
])
def test_each_invalid_item_gets_its_error_type(item: Any, error: str) -> None:
    s = score([cmd("remove", ["Hair"])], [cmd("remove", ["Hair"]), item])
    assert s.errors == [error] and s.primary_error == error
    assert s.fp == 1 and s.recall == 1.0 and s.precision == 0.5 and not s.valid and not s.exact_match
    assert s.schema_valid == (error == "wrong_label") and s.label_valid == (error != "wrong_label")


def test_face_on_an_image_without_a_face_is_a_wrong_label() -> None:
    labels = ["Background", "Hair"]
    s = score([cmd("change", ["Hair"], "curly hair")], [cmd("change", ["Hair"], "curly hair"), cmd("face", "smile")],
              labels=labels)
    assert s.errors == ["wrong_label"] and s.schema_valid and not s.label_valid


def test_missing_extra_wrong_target_and_wrong_para_are_told_apart() -> None:
    expected = [cmd("remove", ["Pants"]), cmd("recolor", ["Hair"], "red"), cmd("change", ["Background"], "beach")]
    produced = [cmd("recolor", ["Hair"], "blue"), cmd("change", ["Upper-clothes"], "beach"), cmd("blur", ["Face"], 0.5)]
    s = score(expected, produced)
    assert s.errors == ["missing_command", "extra_command", "wrong_target", "wrong_para"]
    assert s.primary_error == "missing_command"
    by_type = {m["type"]: m for m in s.misses}
    assert by_type["missing_command"]["command"] == "remove" and by_type["extra_command"]["command"] == "blur"
    assert by_type["wrong_target"]["command"] == "change"
    assert "'blue', expected 'red'" in by_type["wrong_para"]["detail"]
    assert (s.target_pairs, s.target_correct, s.para_pairs, s.para_correct) == (2, 1, 2, 1)
    assert s.valid and not s.exact_match and s.type_match is False


def test_a_command_of_another_type_on_the_same_parts_is_a_wrong_command() -> None:
    s = score([cmd("style", "oil painting"), cmd("recolor", ["Hair"], "red")],
              [cmd("instruct", "make it an oil painting"), cmd("recolor", ["Hair"], "crimson")])
    assert s.errors == ["wrong_command"]
    assert sorted(s.confusion) == [["recolor", "recolor"], ["style", "instruct"]]
    # A face retouch and a change of the Face overlap; a change elsewhere does not.
    assert score([cmd("face", "smile")], [cmd("change", ["Face"], "smile")]).errors == ["wrong_command"]
    assert score([cmd("face", "smile")], [cmd("change", ["Hair"], "smile")]).errors == ["missing_command",
                                                                                        "extra_command"]


def test_error_types_are_listed_most_severe_first() -> None:
    assert ERROR_TYPES[0] == "unparsable" and len(set(ERROR_TYPES)) == len(ERROR_TYPES)
    assert {"unknown_command", "bad_paras", "wrong_label", "missed_refusal", "missing_command", "extra_command",
            "wrong_command", "wrong_target", "wrong_para"} < set(ERROR_TYPES)


def test_a_reference_that_fails_the_contract_cannot_be_scored() -> None:
    with pytest.raises(InvalidReference, match="Expected command 1 does not pass the contract: .*'Skin'"):
        score([cmd("change", ["Skin"], "tan")], [])


# -- refusals -------------------------------------------------------------------------------------------------


def test_no_commands_for_an_impossible_request_is_a_correct_refusal() -> None:
    s = score([], [])
    assert s.correct_refusal is True and s.exact_match and s.f1 == 1.0 and s.errors == [] and s.type_match
    assert score([], None, reply="I can't: there is no hat. []").correct_refusal is True


def test_commands_for_an_impossible_request_are_a_missed_refusal() -> None:
    s = score([], [cmd("recolor", ["Hair"], "red")])
    assert s.correct_refusal is False and s.errors == ["missed_refusal"] and s.f1 == 0.0


def test_no_commands_for_a_possible_request_is_a_missing_command_not_a_refusal() -> None:
    s = score([cmd("face", "smile")], [])
    assert s.correct_refusal is None and s.refused and s.errors == ["missing_command"] and s.recall == 0.0
    m = aggregate([s, score([], [])])
    assert m["false_refusal_rate"] == 1.0 and m["refusal_accuracy"] == 1.0


# -- canonical programs ---------------------------------------------------------------------------------------


def test_two_recolors_of_one_colour_equal_one_recolor_of_both_parts() -> None:
    unmerged = [cmd("recolor", ["Hair"], "red"), cmd("recolor", ["Pants"], "red")]
    merged = [cmd("recolor", ["Pants", "Hair"], "#ff0000")]
    for expected, produced in ((unmerged, merged), (merged, unmerged)):
        s = score(expected, produced)
        assert s.exact_match and s.f1 == 1.0 and s.errors == []
    assert not score(unmerged, [cmd("recolor", ["Hair"], "red"), cmd("recolor", ["Pants"], "blue")]).exact_match


def test_merging_rules_and_order_do_not_change_the_program() -> None:
    expected = [cmd("change", ["Background"], "beach"), cmd("change", ["Upper-clothes"], "white shirt"),
                cmd("adjust", "brightness", 0.2, []), cmd("adjust", "brightness", 0.1, [])]
    produced = [cmd("adjust", "brightness", 0.3, []), cmd("change", ["Upper-clothes", "Background"],
                                                          "Beach, white shirt")]
    assert score(expected, produced).exact_match


def test_exact_match_compares_colours_as_srgb_not_within_tolerance() -> None:
    assert score([cmd("recolor", ["Hair"], "red")], [cmd("recolor", ["Hair"], "#F00")]).exact_match
    near = score([cmd("recolor", ["Hair"], "red")], [cmd("recolor", ["Hair"], "红")])
    assert not near.exact_match and near.parameter_accuracy == 1.0 and near.errors == []


# -- tolerances -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "agree"), [
    ("red", "#ff7f00", True),     # hue 29.9° from red: just inside 30°
    ("red", "#ff8000", False),    # hue 30.1°: just outside
    ("red", "#800000", True),     # lightness 0.249 below: just inside 0.25
    ("red", "#7f0000", False),    # 0.251 below: just outside
    ("red", "orange", False),
    ("red", "pink", False),
    ("blue", "蓝色", True),
    ("white", "silver", True),
    ("white", "gray", False),
    ("black", "navy", False),     # an achromatic colour agrees only with another achromatic one
    ("red", "not a colour", False),
])
def test_colours_agree_by_hue_and_lightness(a: str, b: str, agree: bool) -> None:
    assert colors_match(a, b) is agree and colors_match(b, a) is agree


@pytest.mark.parametrize(("a", "b", "agree"), [
    (0.3, 0.5, True),
    (0.3, 0.6, True),      # exactly twice
    (0.3, 0.61, False),    # more than twice and more than 0.15 apart
    (0.05, 0.2, True),     # four times, but only 0.15 apart
    (0.05, 0.21, False),
    (0.3, -0.3, False),    # brighter is not darker
    (-0.2, -0.35, True),
    (0.0, 0.0, True),
    (0.0, 0.1, False),
])
def test_amounts_agree_by_sign_and_size(a: float, b: float, agree: bool) -> None:
    assert amounts_match(a, b) is agree and amounts_match(b, a) is agree


@pytest.mark.parametrize(("expected", "produced", "agree"), [
    ("brighter smile", "enhanced smile", True),           # half of the key words
    ("sunset beach", "a beach at SUNSET", True),
    ("sunset beach, white shirt", "white shirts", True),   # plurals fold
    ("sunset beach, white shirt", "beach", False),         # one key word of four
    ("make it more vivid", "snowy mountains", False),
    ("红色连衣裙", "红裙子", True),                            # 红, 裙 of 红 连 衣 裙
    ("蓝天白云", "夕阳下的海边", False),
    ("sunset beach", "夕阳海滩", False),                     # another language shares no key words
])
def test_prompts_agree_by_key_words(expected: str, produced: str, agree: bool) -> None:
    assert prompts_match(expected, produced) is agree


def test_key_words_drop_stop_words_and_case() -> None:
    assert key_words("Make the Hair a bit MORE curly") == {"hair", "curly"}
    assert key_words("把头发变成红色的") == {"头", "发", "变", "红"}


def test_a_para_outside_its_tolerance_is_a_wrong_para_inside_it_is_right() -> None:
    expected = [cmd("adjust", "brightness", 0.3, []), cmd("face", "brighter smile")]
    inside = score(expected, [cmd("adjust", "brightness", 0.5, []), cmd("face", "enhanced smile")])
    outside = score(expected, [cmd("adjust", "brightness", -0.3, []), cmd("face", "sad look")])
    assert inside.errors == [] and inside.parameter_accuracy == 1.0 and not inside.exact_match
    assert outside.errors == ["wrong_para"] and outside.parameter_accuracy == 0.0
    assert outside.para_kinds == {"enum": [1, 1], "number": [0, 1], "text": [0, 1]}
    assert inside.para_kinds["number"] == [1, 1]
    wrong_property = score(expected, [cmd("adjust", "contrast", 0.3, []), cmd("face", "brighter smile")])
    assert wrong_property.errors == ["wrong_para"] and wrong_property.para_kinds["enum"] == [0, 1]


# -- aggregation ----------------------------------------------------------------------------------------------


def _run() -> list[ExampleScore]:
    return [
        score([cmd("recolor", ["Hair"], "red")], [cmd("recolor", ["Hair"], "red")], latency_s=1.0,
              tokens={"prompt": 100, "completion": 10}),
        score([cmd("recolor", ["Hair"], "red"), cmd("remove", ["Pants"])], [cmd("recolor", ["Pants"], "red")],
              latency_s=2.0, tokens=(120, 20)),
        score([cmd("face", "smile")], None, reply="cannot", language="zh", latency_s=3.0, tokens=30),
        score([cmd("style", "oil painting")], [cmd("instruct", "oil painting")], language="zh", latency_s=4.0),
    ]


def test_aggregate_rates_and_f1() -> None:
    m = aggregate(_run())
    assert m["examples"] == 4 and m["parse_rate"] == 0.75 and m["exact_match"] == 0.25
    # pairs: tp 1 (recolor Hair); fp 2 (recolor Pants, instruct); fn 4 (recolor Hair, remove, face, style)
    assert m["precision_micro"] == pytest.approx(1 / 3) and m["recall_micro"] == pytest.approx(1 / 5)
    assert m["f1_micro"] == pytest.approx(2 * (1 / 3) * (1 / 5) / (1 / 3 + 1 / 5))
    assert m["f1_example"] == pytest.approx((1.0 + 0 + 0 + 0) / 4)
    assert m["target_accuracy"] == 0.5 and m["parameter_accuracy"] == 1.0
    assert m["error_rate"] == 0.75 and m["refusal_accuracy"] is None


def test_per_command_breakdown() -> None:
    table = aggregate(_run()).per_command
    assert list(table) == ["remove", "face", "instruct", "style", "recolor"]  # the rules' order
    assert table["recolor"] == {"support": 2, "produced": 2, "tp": 1, "fp": 1, "fn": 1, "precision": 0.5,
                                "recall": 0.5, "f1": 0.5}
    assert table["remove"]["recall"] == 0.0 and table["remove"]["precision"] is None and table["remove"]["f1"] == 0.0
    assert table["instruct"]["precision"] == 0.0 and table["instruct"]["recall"] is None
    assert aggregate(_run())["f1_macro"] == pytest.approx(0.5 / 5)


def test_per_language_breakdown() -> None:
    by_language = aggregate(_run()).per_language
    assert sorted(by_language) == ["en", "zh"]
    assert by_language["en"]["examples"] == 2 and by_language["en"]["parse_rate"] == 1.0
    assert by_language["zh"]["parse_rate"] == 0.5 and by_language["zh"]["exact_match"] == 0.0
    assert by_language["en"]["latency_p50_s"] == 1.5


def test_confusion_matrix_and_error_histogram() -> None:
    m = aggregate(_run())
    assert m.confusion == {"face": {NONE: 1}, "recolor": {"recolor": 2}, "remove": {NONE: 1},
                           "style": {"instruct": 1}}
    assert m.errors["unparsable"] == 1 and m.errors["wrong_target"] == 1 and m.errors["missing_command"] == 1
    assert m.errors["wrong_command"] == 1 and list(m.errors) == list(ERROR_TYPES)
    assert m.primary_errors["missing_command"] == 1 and m.primary_errors["wrong_target"] == 0
    assert sum(m.primary_errors.values()) == 3


def test_latency_percentiles_and_tokens() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 50) == 5.5
    assert percentile([10.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 95) == pytest.approx(9.55)
    assert percentile([], 50) is None
    m = aggregate(_run())
    assert m["latency_p50_s"] == 2.5 and m["latency_p95_s"] == pytest.approx(3.85) and m["latency_mean_s"] == 2.5
    assert (m["prompt_tokens_total"], m["completion_tokens_total"]) == (220, 60)
    assert (m["prompt_tokens_mean"], m["completion_tokens_mean"]) == (110, 20)


def test_metrics_are_json_with_stable_keys_and_reload_identically() -> None:
    scores = _run()
    m = aggregate(scores)
    data = json.loads(json.dumps(m.to_dict()))
    assert list(data) == ["scalars", "per_command", "per_language", "confusion", "errors", "primary_errors",
                          "parameter_kinds"]
    assert list(data["scalars"]) == list(METRIC_NAMES)
    reloaded = [ExampleScore.from_dict(json.loads(json.dumps(s.to_dict()))) for s in scores]
    assert reloaded == scores and aggregate(reloaded).to_dict() == data
    assert EvalMetrics.from_dict(data).to_dict() == data
    table = metrics_table(m)
    assert [name for name, _ in table] == list(METRIC_NAMES) and metrics_table(data) == table
    assert dict(table)["parse_rate"] == 0.75


def test_a_plan_results_rejected_items_count_against_it() -> None:
    result = PlanResult(reply="…", commands=[Command("recolor", (("Hair",), "red"))],
                        rejections=[Rejection(0, {"command": "remove", "paras": [["Hat"]]}, "no Hat")])
    items = produced_items(result)
    assert items == [{"command": "remove", "paras": [["Hat"]]}, {"command": "recolor", "paras": [["Hair"], "red"]}]
    s = score([cmd("recolor", ["Hair"], "red")], items)
    assert s.errors == ["wrong_label"] and s.precision == 0.5


# -- the real seed file ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not SEED.is_file(), reason=f"the seed dataset is not at {SEED} (../shared beside the checkout)")
def test_the_seed_reference_outputs_score_full_marks_against_themselves() -> None:
    from finetune.dataset_formats import read_rows

    rows = read_rows(SEED, "seed").rows
    assert len(rows) > 2000
    rules = load_rules()
    scores = [score_row(r, json.dumps([dict(c) for c in r.commands], ensure_ascii=False), None, latency_s=0.5,
                        rules=rules) for r in rows]
    m = aggregate(scores)
    rates = [name for name in METRIC_NAMES if name not in ("examples", "false_refusal_rate", "error_rate")
             and not name.startswith(("latency", "prompt_tokens", "completion_tokens"))
             and name != "refusal_accuracy"]  # the seed file has no request to refuse
    assert {name: m[name] for name in rates} == {name: 1.0 for name in rates}
    assert m["false_refusal_rate"] == 0.0 and m["error_rate"] == 0.0 and m["refusal_accuracy"] is None
    assert set(m.per_command) == {"change", "face"} and all(row["f1"] == 1.0 for row in m.per_command.values())
    assert all(want == got for want, row in m.confusion.items() for got in row)
    assert sum(m.errors.values()) == 0
    assert {lang: row["exact_match"] for lang, row in m.per_language.items()} == {"en": 1.0, "zh": 1.0}
