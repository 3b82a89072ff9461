"""Import and export on the real seed file: every format round trips, LLaMA-Factory's rules read the export back,
rows that break the contract are listed with reasons, and files that cannot be read are refused with a sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.commands import extract_commands
from core.planners.messages import build_messages, labels_turn
from finetune.dataset_formats import (
    DATASET_INFO,
    DatasetFormatError,
    ImportResult,
    detect_format,
    output_text,
    read_rows,
    write_export,
)
from finetune.dataset_rows import DatasetRow
from tests import llamafactory_loader

SEED = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_chat_dataset.json"
needs_seed = pytest.mark.skipif(not SEED.is_file(), reason=f"the seed dataset is not at {SEED}")
EXPORT_FORMATS = ("seed", "alpaca", "sharegpt", "openai")


@pytest.fixture(scope="module")
def seed() -> ImportResult:
    return read_rows(SEED, "seed")


def _contents(rows: list[DatasetRow]) -> list[tuple]:
    return [row.content() for row in rows]


@needs_seed
def test_the_seed_imports_with_its_contract_breaking_rows_listed(seed: ImportResult) -> None:
    raw = json.loads(SEED.read_text(encoding="utf-8"))
    assert len(seed.rows) + len(seed.rejected) == len(raw) == 2916
    assert 2500 < len(seed.rows) < 2916  # the thesis data has labels such as Skin and Makeup that no segmenter makes
    reasons = " ".join(r.reason for r in seed.rejected)
    assert "This image has no 'Skin'" in reasons and "This image has no 'Makeup'" in reasons
    first_rejected = seed.rejected[0]
    assert first_rejected.raw == raw[first_rejected.index]
    first = seed.rows[0]
    assert first.request == raw[0]["instruction"] and first.language == "zh" and first.source == "import"
    assert first.labels[:3] == ("Background", "Hair", "Upper-clothes")
    assert list(first.commands) == extract_commands(raw[0]["output"])
    assert first.origin == "seed_chat_dataset.json#0"
    assert all(row.passed for row in seed.rows)


@needs_seed
@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_import_export_import_gives_the_same_rows(seed: ImportResult, fmt: str, tmp_path: Path) -> None:
    paths = write_export(seed.rows, tmp_path, fmt, "seed")
    data = paths[0]
    assert data.name == ("seed.jsonl" if fmt == "openai" else "seed.json")
    assert detect_format(data) == fmt
    back = read_rows(data, fmt)
    assert back.rejected == []
    assert _contents(back.rows) == _contents(seed.rows)


@needs_seed
@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_llamafactory_reads_the_export_as_the_planner_prompts(seed: ImportResult, fmt: str, tmp_path: Path) -> None:
    rows = seed.rows[::7]
    write_export(rows, tmp_path, fmt, "chatedit")
    examples = llamafactory_loader.load(tmp_path, "chatedit")
    assert len(examples) == len(rows)
    for row, example in zip(rows, examples, strict=True):
        expected = build_messages(row.request, row.labels, language="zh")
        assert example.prompt == expected[1:]  # labels turn, request: byte for byte what inference sends
        assert example.prompt[:2] == labels_turn(row.labels, "zh")
        assert example.prompt[-1] == {"role": "user", "content": row.request}
        assert example.system == ("" if fmt == "seed" else expected[0]["content"])
        assert example.response == [{"role": "assistant", "content": output_text(row.commands)}]
        assert extract_commands(example.response[0]["content"]) == list(row.commands)


def _hand_rows() -> list[DatasetRow]:
    return [
        DatasetRow("and now the pants too", "en", ("Background", "Hair", "Pants"),
                   ({"command": "recolor", "paras": [["Pants"], "navy"]},),
                   conversation=(("make the hair navy", '[{"command":"recolor","paras":[["Hair"],"navy"]}]'),)),
        DatasetRow("make it warmer", "en", (), ({"command": "adjust", "paras": ["warmth", 0.3, []]},)),
        DatasetRow("把选中的区域模糊", "zh", ("Selection",), ({"command": "blur", "paras": [["Selection"], 0.5]},)),
    ]


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_conversations_empty_labels_and_english_round_trip(fmt: str, tmp_path: Path) -> None:
    rows = _hand_rows()
    back = read_rows(write_export(rows, tmp_path, fmt, "hand")[0], fmt)
    assert back.rejected == []
    assert _contents(back.rows) == _contents(rows)
    examples = llamafactory_loader.load(tmp_path, "hand")
    # the earlier turn sits between the labels turn and the request
    assert [m["content"] for m in examples[0].prompt[2:]] == ["make the hair navy", rows[0].conversation[0][1],
                                                             "and now the pants too"]
    assert "There are no segmentation labels" in examples[1].prompt[1]["content"]


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "openai"])
def test_splits_export_as_separate_registered_files(fmt: str, tmp_path: Path) -> None:
    rows = [DatasetRow(f"make the hair {c}", "en", ("Hair",), ({"command": "recolor", "paras": [["Hair"], c]},),
                       split=split)
            for c, split in [("red", "train"), ("blue", "train"), ("green", "val"), ("pink", "test")]]
    paths = write_export(rows, tmp_path, fmt, "hair")
    suffix = ".jsonl" if fmt == "openai" else ".json"
    assert [p.name for p in paths] == [f"hair_train{suffix}", f"hair_val{suffix}", f"hair_test{suffix}", DATASET_INFO]
    info = json.loads((tmp_path / DATASET_INFO).read_text(encoding="utf-8"))
    assert set(info) == {"hair_train", "hair_val", "hair_test"}
    assert [len(llamafactory_loader.load(tmp_path, n)) for n in ("hair_train", "hair_val", "hair_test")] == [2, 1, 1]
    assert _contents(read_rows(tmp_path / f"hair_val{suffix}", fmt).rows) == _contents(rows[2:3])


def test_dataset_info_entries_follow_llamafactorys_readme(tmp_path: Path) -> None:
    rows = _hand_rows()
    (tmp_path / DATASET_INFO).write_text(json.dumps({"mine": {"file_name": "mine.json"}}), encoding="utf-8")
    for fmt in EXPORT_FORMATS:
        write_export(rows, tmp_path, fmt, f"hand_{fmt}")
    info = json.loads((tmp_path / DATASET_INFO).read_text(encoding="utf-8"))
    assert info["mine"] == {"file_name": "mine.json"}  # an admin's own entries survive an export
    assert info["hand_alpaca"] == {"file_name": "hand_alpaca.json", "formatting": "alpaca", "columns": {
        "prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}}
    assert "system" not in info["hand_seed"]["columns"]
    assert info["hand_sharegpt"]["formatting"] == "sharegpt"
    assert info["hand_sharegpt"]["columns"] == {"messages": "conversations"}
    assert info["hand_sharegpt"]["tags"] == {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                                             "assistant_tag": "gpt", "system_tag": "system"}
    assert info["hand_openai"]["file_name"] == "hand_openai.jsonl"
    assert info["hand_openai"]["tags"]["role_tag"] == "role"
    sharegpt = json.loads((tmp_path / "hand_sharegpt.json").read_text(encoding="utf-8"))
    assert [m["from"] for m in sharegpt[0]["conversations"]] == ["system", "human", "gpt", "human", "gpt", "human",
                                                                  "gpt"]


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "openai"])
def test_files_without_a_system_prompt_import_the_same(fmt: str, tmp_path: Path) -> None:
    rows = _hand_rows()
    path = write_export(rows, tmp_path / "with", fmt, "hand")[0]
    bare = tmp_path / path.name
    if fmt == "alpaca":
        records = json.loads(path.read_text(encoding="utf-8"))
        bare.write_text(json.dumps([{k: v for k, v in r.items() if k != "system"} for r in records]), encoding="utf-8")
    elif fmt == "sharegpt":
        records = json.loads(path.read_text(encoding="utf-8"))
        bare.write_text(json.dumps([{"conversations": r["conversations"][1:]} for r in records]), encoding="utf-8")
    else:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        bare.write_text("".join(json.dumps({"messages": r["messages"][1:]}) + "\n" for r in lines), encoding="utf-8")
    assert _contents(read_rows(bare, fmt).rows) == _contents(rows)


def test_a_sharegpt_file_with_its_own_tags_is_read_through_its_dataset_info(tmp_path: Path) -> None:
    rows = _hand_rows()
    openai = write_export(rows, tmp_path / "out", "openai", "hand")[0]
    records = [json.loads(line) for line in openai.read_text(encoding="utf-8").splitlines()]
    (tmp_path / "chat.json").write_text(json.dumps([{"dialog": r["messages"]} for r in records]), encoding="utf-8")
    (tmp_path / DATASET_INFO).write_text(json.dumps({"chat": {
        "file_name": "chat.json", "formatting": "sharegpt", "columns": {"messages": "dialog"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}}}), encoding="utf-8")
    assert _contents(read_rows(tmp_path / "chat.json", "sharegpt").rows) == _contents(rows)


def _bad_file(tmp_path: Path) -> Path:
    labels = "分割得到的标签有:\n1. Background\n2. Hair\n3. Face"
    question = "我更改了图片，新的图片有哪些部分？"

    def record(instruction: str, output: str, answer: str = labels) -> dict:
        return {"instruction": instruction, "input": "", "output": output, "history": [[question, answer]]}

    rows = [
        record("把头发染成红色", '[{"command": "recolor", "paras": [["Hair"], "red"]}]'),
        record("把头发染成蓝色", "好的，我会把头发染成蓝色。"),
        record("把尾巴染成蓝色", '[{"command": "recolor", "paras": [["Hair"], "blue"]}]', labels + "\n4. Tail"),
        record("放大图片", '[{"command": "zoom", "paras": [2]}]'),
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def test_rows_that_break_the_contract_are_listed_with_reasons_and_kept_out(tmp_path: Path) -> None:
    result = read_rows(_bad_file(tmp_path), "seed")
    assert [row.request for row in result.rows] == ["把头发染成红色"]
    assert [r.index for r in result.rejected] == [1, 2, 3]
    unparsable, tail, unknown = (r.reason for r in result.rejected)
    assert "holds no JSON array of command objects" in unparsable
    assert tail == "Label 'Tail' is not a part any segmenter produces."
    assert "'zoom' is not a command; use one of remove" in unknown
    assert result.rejected[1].raw["instruction"] == "把尾巴染成蓝色"


def test_rows_that_break_the_contract_are_kept_when_asked(tmp_path: Path) -> None:
    result = read_rows(_bad_file(tmp_path), "seed", keep_invalid=True)
    assert len(result.rows) == 4 and result.rejected == []
    assert [sorted(row.failed_checks) for row in result.rows] == [[], ["parse"], ["labels"], ["contract"]]
    assert result.rows[1].commands == ()
    assert result.rows[2].labels == ("Background", "Hair", "Face", "Tail")


@pytest.mark.parametrize(("content", "fmt", "message"), [
    ("{not json", "seed", "bad.json is not JSON"),
    ('{"instruction": "x"}', "alpaca", "must hold a JSON list of rows, not a dict"),
    ('[{"instruction": "x", "output": "[]"}, {"output": "[]"}]', "alpaca", "Row 2 of bad.json has no instruction"),
    ('[{"instruction": "x", "output": "[]", "history": [["only one"]]}]', "seed", "not a [question, answer] pair"),
    ('[{"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}]', "sharegpt",
     "message 2 should come from 'gpt'"),
    ('[{"conversations": [{"from": "human", "value": "a"}]}]', "sharegpt", "does not end with the assistant's answer"),
    ('{"messages": []}\nnot json\n', "openai", "Line 2 of bad.json is not JSON"),
    ("[]", "seed", "bad.json holds no rows"),
])
def test_unreadable_files_are_refused_with_a_sentence(tmp_path: Path, content: str, fmt: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=message.replace("[", r"\[")):
        read_rows(path, fmt)


def test_a_missing_file_and_an_unknown_format_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="There is no dataset file"):
        read_rows(tmp_path / "nowhere.json", "seed")
    (tmp_path / "x.json").write_text("[]", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="'csv' is not a dataset format"):
        read_rows(tmp_path / "x.json", "csv")
    with pytest.raises(ValueError, match="An export name"):
        write_export(_hand_rows(), tmp_path, "alpaca", "../escape")


def test_jsonl_files_of_any_format_are_read_and_detected(tmp_path: Path) -> None:
    rows = _hand_rows()
    exported = json.loads(write_export(rows, tmp_path / "out", "sharegpt", "hand")[0].read_text(encoding="utf-8"))
    path = tmp_path / "hand.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in exported), encoding="utf-8")
    assert detect_format(path) == "sharegpt"
    assert _contents(read_rows(path).rows) == _contents(rows)


def test_a_blank_conversation_turn_is_refused_on_export(tmp_path: Path) -> None:
    row = DatasetRow("and the pants", "en", ("Pants",), ({"command": "recolor", "paras": [["Pants"], "red"]},),
                     conversation=(("make the hair red", "  "),))
    with pytest.raises(ValueError, match="blank conversation turn"):
        write_export([row], tmp_path / "out", "sharegpt", "blank")
    assert not (tmp_path / "out").exists()  # nothing half-written
    with pytest.raises(ValueError, match="no rows to export"):
        write_export([], tmp_path, "sharegpt", "empty")


def test_an_upload_is_named_by_the_file_name_the_admin_gave(tmp_path: Path) -> None:
    upload = _bad_file(tmp_path)
    result = read_rows(upload, "seed", file_name="thesis.json")
    assert result.rows[0].origin == "thesis.json#0"
    upload.write_text("[1]", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="Row 1 of thesis.json is not a JSON object"):
        read_rows(upload, "seed", file_name="thesis.json")


def test_the_answer_a_model_learns_names_the_command_first_whatever_order_the_database_gave() -> None:
    """PostgreSQL's JSONB returns {"paras": …, "command": …}; training text must still be what the grammar writes."""
    from_jsonb = [{"paras": [["Hair"], "red"], "command": "recolor"}, {"paras": [], "command": "advice", "note": 1}]
    assert output_text(from_jsonb) == ('[{"command":"recolor","paras":[["Hair"],"red"]},'
                                       '{"command":"advice","paras":[],"note":1}]')
