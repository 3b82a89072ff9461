"""Import and export of fine-tuning data: the thesis' seed file, LLaMA-Factory alpaca and sharegpt, OpenAI chat JSONL.

One mapping for every format, so a row survives import → export → import unchanged
(:meth:`DatasetRow.content`):

- the **request** is the last user turn (alpaca: ``instruction``, joined with a non-empty
  ``input`` by a newline as LLaMA-Factory joins them);
- the **labels** are the thesis' labels turn (:func:`core.planners.messages.labels_turn`),
  the *first* user/assistant pair: alpaca's first ``history`` pair, sharegpt's and OpenAI's
  first two turns after the system message; its answer is read by
  :func:`finetune.evaluation.parse_labels`. A file whose rows have no earlier pair gives
  rows without labels;
- the pairs between the labels turn and the request are the **conversation**;
- the **output** is the command array as JSON text (:func:`output_text`).

Exports are built by :func:`core.planners.messages.build_messages`, the one builder the
planners use at inference, so what a model is trained on and what it is asked later are
the same bytes: sharegpt and OpenAI rows start with its system message (role ``system``,
LLaMA-Factory's default ``system_tag``), alpaca rows carry it in the ``system`` column. The
seed format is alpaca as the thesis wrote it: no system column. Importers accept files with
or without a system prompt and ignore it (the prompt is derived from the rules, so it is
rebuilt on export). Like the builder, an export cleans control characters out of the text
(:func:`core.text.clean_prompt`) and keeps the last ``MAX_TURNS`` turns of a conversation.

Importing runs the checks of :mod:`finetune.dataset_checks`; a row failing ``parse``,
``labels`` or ``contract`` is listed in :attr:`ImportResult.rejected` with the reason and left
out of the rows, unless ``keep_invalid``. A file that cannot be read as the format at all is
refused whole with a sentence naming the row (:class:`DatasetFormatError`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from core.planners.base import ChatTurn, detect_language
from core.planners.messages import build_messages
from core.rules import Rules, load_rules
from finetune.dataset_checks import IMPORT_CHECKS, check_row, parse_output
from finetune.dataset_rows import SPLITS, DatasetRow
from finetune.evaluation import DatasetError, parse_labels

#: The formats read and written. ``seed``: the thesis file as it is (alpaca without ``system``).
FORMATS = ("seed", "alpaca", "sharegpt", "openai")
#: LLaMA-Factory's registry of datasets, read from the dataset directory.
DATASET_INFO = "dataset_info.json"

_NAME = re.compile(r"\w[\w.-]*")

#: LLaMA-Factory's column names per format, as its data/README documents them for these layouts.
_COLUMNS: dict[str, dict[str, str]] = {
    "seed": {"prompt": "instruction", "query": "input", "response": "output", "history": "history"},
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
               "history": "history"},
    "sharegpt": {"messages": "conversations"},
    "openai": {"messages": "messages"},
}
#: Role tags: sharegpt's defaults (from/value, human/gpt/system) and the OpenAI layout's.
_TAGS: dict[str, dict[str, str]] = {
    "sharegpt": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"},
    "openai": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "system_tag": "system"},
}
#: LLaMA-Factory's defaults when dataset_info.json gives no columns (sharegpt reads ``conversations``).
_DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": None,
                    "messages": "conversations", "system": None}


class DatasetFormatError(DatasetError):
    """A file that cannot be read as the format at all; the message says where."""


class Rejected(NamedTuple):
    """A row left out of an import: its index in the file (from 0), why, and the record as read."""

    index: int
    reason: str
    raw: Any


@dataclass
class ImportResult:
    """What an import made of a file.

    ``rows`` holds the rows that passed ``parse``, ``labels`` and ``contract``, in file order;
    ``rejected`` the rows left out, with the reason. With ``keep_invalid`` nothing is left out:
    the failing rows are in ``rows`` with their failed checks (``row.failed_checks``), and
    ``rejected`` is empty.
    """

    format: str
    rows: list[DatasetRow] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


# -- import ------------------------------------------------------------------------------------


def read_rows(path: Path | str, format: str | None = None, *, keep_invalid: bool = False,
              rules: Rules | None = None, file_name: str | None = None) -> ImportResult:
    """Rows of a dataset file in ``format`` (detected when None), checked; see the module docstring.

    ``file_name``: the name the admin knows the file by (an upload saved under another name),
    used in messages and in each row's origin (``NAME#index``); the path's name by default.
    """
    path = Path(path)
    shown = file_name or path.name
    rules = rules or load_rules()
    format = format or detect_format(path, file_name=shown)
    if format not in FORMATS:
        raise DatasetFormatError(f"{format!r} is not a dataset format; the formats are {', '.join(FORMATS)}.")
    records = _load_records(path, jsonl=format == "openai" or path.suffix == ".jsonl", shown=shown)
    if not records:
        raise DatasetFormatError(f"{shown} holds no rows.")
    columns, tags = _layout(path, format)
    result = ImportResult(format)
    for index, record in enumerate(records):
        where = f"Row {index + 1} of {shown}"
        if format in ("seed", "alpaca"):
            pairs = _alpaca_pairs(record, columns, where)
        else:
            pairs = _chat_pairs(record, columns, tags, where)
        row = _row(pairs, origin=f"{shown}#{index}", rules=rules)
        failed = [row.checks[name] for name in IMPORT_CHECKS if row.checks.get(name, True) is not True]
        if failed and not keep_invalid:
            result.rejected.append(Rejected(index, " ".join(str(reason) for reason in failed), record))
            continue
        result.rows.append(row)
    return result


def detect_format(path: Path | str, *, file_name: str | None = None) -> str:
    """The format of a dataset file, from the keys of its first record."""
    path = Path(path)
    shown = file_name or path.name
    records = _load_records(path, jsonl=path.suffix == ".jsonl", shown=shown)
    first = records[0] if records else {}
    if not isinstance(first, Mapping):
        raise DatasetFormatError(f"Row 1 of {shown} is not a JSON object, so its format cannot be told.")
    if "conversations" in first:
        return "sharegpt"
    if "messages" in first:
        return "openai"
    if "instruction" in first:
        return "alpaca" if "system" in first else "seed"
    raise DatasetFormatError(f"{shown} is in no format read here: its rows have neither instruction "
                             "(alpaca), conversations (sharegpt) nor messages (OpenAI).")


def _load_records(path: Path, *, jsonl: bool, shown: str) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetFormatError(f"There is no dataset file at {path}.") from None
    except UnicodeDecodeError:
        raise DatasetFormatError(f"{shown} is not UTF-8 text.") from None
    if jsonl and not text.lstrip().startswith("["):
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"Line {number} of {shown} is not JSON ({exc.msg}).") from None
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{shown} is not JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(data, list):
        raise DatasetFormatError(f"{shown} must hold a JSON list of rows, not a {type(data).__name__}.")
    return data


def _layout(path: Path, format: str) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Column and tag names: this format's, or those of the file's entry in a dataset_info.json beside it.

    An entry is read as LLaMA-Factory reads it: given ``columns``, a column it does not name is
    absent; given ``tags``, so is a tag.
    """
    columns: dict[str, str | None] = {**_DEFAULT_COLUMNS, **_COLUMNS[format]}
    tags: dict[str, str | None] = dict(_TAGS.get(format, _TAGS["sharegpt"]))
    info = path.with_name(DATASET_INFO)
    if not info.is_file():
        return columns, tags
    try:
        entries = json.loads(info.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DatasetFormatError(f"{info} is not JSON, so the layout of {path.name} cannot be read from it.") from None
    entry = next((e for e in entries.values() if isinstance(e, Mapping) and e.get("file_name") == path.name), None) \
        if isinstance(entries, Mapping) else None
    if entry is None:
        return columns, tags
    if isinstance(entry.get("columns"), Mapping):
        columns = {name: entry["columns"].get(name) for name in _DEFAULT_COLUMNS}
    if isinstance(entry.get("tags"), Mapping):
        tags = {name: entry["tags"].get(name) for name in tags}
    return columns, tags


def _text(record: Mapping[str, Any], column: str | None, where: str, *, required: bool) -> str:
    value = record.get(column) if column else None
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DatasetFormatError(f"{where} has no {column or 'required'} text.")
    return value


def _alpaca_pairs(record: Any, columns: Mapping[str, str | None], where: str) -> list[tuple[str, str]]:
    if not isinstance(record, Mapping):
        raise DatasetFormatError(f"{where} is not a JSON object.")
    prompt = _text(record, columns["prompt"], where, required=True)
    query = _text(record, columns["query"], where, required=False)
    output = _text(record, columns["response"], where, required=True)
    history = record.get(columns["history"]) if columns["history"] else None
    if history is not None and not isinstance(history, list):
        raise DatasetFormatError(f"{where} has a history that is not a list of pairs.")
    pairs: list[tuple[str, str]] = []
    for turn in history or []:
        if not (isinstance(turn, Sequence) and not isinstance(turn, str) and len(turn) == 2
                and all(isinstance(t, str) for t in turn)):
            raise DatasetFormatError(f"{where} has a history turn that is not a [question, answer] pair of texts.")
        pairs.append((turn[0], turn[1]))
    pairs.append(("\n".join(t for t in (prompt, query) if t), output))
    return pairs


def _chat_pairs(record: Any, columns: Mapping[str, str | None], tags: Mapping[str, str | None],
                where: str) -> list[tuple[str, str]]:
    if not isinstance(record, Mapping):
        raise DatasetFormatError(f"{where} is not a JSON object.")
    messages = record.get(columns["messages"] or "")
    role, content = tags["role_tag"], tags["content_tag"]
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise DatasetFormatError(f"{where} has no {columns['messages']!r} list of messages.")
    if messages and tags["system_tag"] and messages[0].get(role) == tags["system_tag"]:
        messages = messages[1:]
    expected = (tags["user_tag"], tags["assistant_tag"])
    for number, message in enumerate(messages):
        if message.get(role) != expected[number % 2]:
            raise DatasetFormatError(f"{where}: message {number + 1} should come from {expected[number % 2]!r}, "
                                     f"not {message.get(role)!r} (turns alternate, the request's answer last).")
        if not isinstance(message.get(content), str):
            raise DatasetFormatError(f"{where}: message {number + 1} has no {content!r} text.")
    if not messages or len(messages) % 2:
        raise DatasetFormatError(f"{where} does not end with the assistant's answer to the request.")
    return [(messages[i][content], messages[i + 1][content]) for i in range(0, len(messages), 2)]


def _row(pairs: list[tuple[str, str]], *, origin: str, rules: Rules) -> DatasetRow:
    """A checked row from the user/assistant pairs of one record: labels turn first, request last."""
    request, output = pairs[-1]
    labels = parse_labels(pairs[0][1]) if len(pairs) > 1 else ()
    items = parse_output(output)
    row = DatasetRow(
        request=request, language=detect_language(request), labels=labels,
        commands=tuple(items) if isinstance(items, list) else (), conversation=tuple(pairs[1:-1]),
        source="import", origin=origin, checks={"parse": True if isinstance(items, list) else items},
    )
    return check_row(row, rules)


# -- export ------------------------------------------------------------------------------------


def output_text(commands: Iterable[Mapping[str, Any]]) -> str:
    """The command array as a model should write it: compact JSON, as the constrained grammar writes it.

    "command" comes before "paras" whatever order the mapping has: PostgreSQL's JSONB gives keys back
    shortest first (``{"paras": …, "command": …}``), and a model trained on that order writes text the
    grammar does not allow.
    """
    first = ("command", "paras")
    ordered = [{**{k: c[k] for k in first if k in c}, **{k: v for k, v in c.items() if k not in first}}
               for c in commands]
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))


def row_messages(row: DatasetRow, rules: Rules | None = None) -> list[dict[str, str]]:
    """The whole exchange of a row as training sees it: :func:`build_messages` and the expected answer."""
    turns = [ChatTurn(role, text) for user, assistant in row.conversation
             for role, text in (("user", user), ("assistant", assistant))]
    # The language as the planners detect it at inference (not row.language), so the prompt is the same bytes.
    messages = build_messages(row.request, row.labels, turns, language=detect_language(row.request), rules=rules)
    messages.append({"role": "assistant", "content": output_text(row.commands)})
    roles = [m["role"] for m in messages[1:]]
    if roles != ["user", "assistant"] * (len(roles) // 2):
        raise DatasetError(f"The row {row.request[:40]!r} has a blank conversation turn, so its turns no longer "
                           "alternate; remove or fill that turn before exporting.")
    return messages


def to_record(row: DatasetRow, format: str, rules: Rules | None = None) -> dict[str, Any]:
    """One row as a record of ``format``."""
    messages = row_messages(row, rules)
    if format in ("seed", "alpaca"):
        body = messages[1:]
        record: dict[str, Any] = {"instruction": body[-2]["content"], "input": "", "output": body[-1]["content"]}
        if format == "alpaca":
            record["system"] = messages[0]["content"]
        record["history"] = [[body[i]["content"], body[i + 1]["content"]] for i in range(0, len(body) - 2, 2)]
        return record
    if format == "sharegpt":
        tags = _TAGS["sharegpt"]
        by_role = {"system": tags["system_tag"], "user": tags["user_tag"], "assistant": tags["assistant_tag"]}
        return {"conversations": [{"from": by_role[m["role"]], "value": m["content"]} for m in messages]}
    if format == "openai":
        return {"messages": messages}
    raise DatasetFormatError(f"{format!r} is not a dataset format; the formats are {', '.join(FORMATS)}.")


def dataset_info_entry(format: str, file_name: str) -> dict[str, Any]:
    """The dataset_info.json entry LLaMA-Factory needs to train on ``file_name`` in ``format``."""
    entry: dict[str, Any] = {"file_name": file_name,
                             "formatting": "alpaca" if format in ("seed", "alpaca") else "sharegpt",
                             "columns": dict(_COLUMNS[format])}
    if format in _TAGS:
        entry["tags"] = dict(_TAGS[format])
    return entry


def write_export(rows: Sequence[DatasetRow], directory: Path | str, format: str, name: str,
                 rules: Rules | None = None) -> list[Path]:
    """Write ``rows`` in ``format`` into ``directory`` with their ``dataset_info.json`` entries; the paths written.

    Rows without a split go to ``NAME.json`` (``.jsonl`` for OpenAI), registered as ``NAME``;
    rows with one go to ``NAME_train.json``, ``NAME_val.json``, ``NAME_test.json``, registered as
    ``NAME_train`` etc. (LLaMA-Factory: ``dataset: NAME_train``, ``eval_dataset: NAME_val``). Only
    non-empty groups are written. Entries already in the directory's dataset_info.json are kept,
    so several exports can share one data directory; an entry of the same name is replaced.
    """
    if format not in FORMATS:
        raise DatasetFormatError(f"{format!r} is not a dataset format; the formats are {', '.join(FORMATS)}.")
    if not _NAME.fullmatch(name):
        raise ValueError(f"An export name is letters, digits, '.', '_' and '-', starting with a letter or digit, "
                         f"not {name!r}.")
    if not rows:
        raise ValueError("There are no rows to export.")
    rules = rules or load_rules()
    directory = Path(directory)
    info_path = directory / DATASET_INFO
    info = _existing_info(info_path)
    suffix = ".jsonl" if format == "openai" else ".json"
    groups: dict[str, list[dict[str, Any]]] = {}
    for split in (None, *SPLITS):  # every record is built before any file is written: a bad row writes nothing
        records = [to_record(row, format, rules) for row in rows if row.split == split]
        if records:
            groups[name if split is None else f"{name}_{split}"] = records
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for entry_name, records in groups.items():
        path = directory / f"{entry_name}{suffix}"
        if format == "openai":
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        else:
            text = json.dumps(records, ensure_ascii=False, indent=2) + "\n"
        path.write_text(text, encoding="utf-8")
        info[entry_name] = dataset_info_entry(format, path.name)
        written.append(path)
    info_path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return [*written, info_path]


def _existing_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DatasetFormatError(f"{path} exists and is not JSON; move it aside before exporting here.") from None
    if not isinstance(info, dict):
        raise DatasetFormatError(f"{path} exists and is not a JSON object of datasets; move it aside first.")
    return info
