"""A small reader that follows LLaMA-Factory's documented dataset rules, to prove an export trains as it is.

Written from LLaMA-Factory's ``data/README.md`` and its parser and converters (``parser.py``,
``converter.py``), not from our exporter, so a mistake in the export shows up here:

- ``dataset_info.json`` in the dataset directory names each dataset: ``file_name``,
  ``formatting`` (default ``alpaca``), ``columns`` and, for sharegpt, ``tags``. When ``columns``
  is given, a column it does not name is absent (``None``), as LLaMA-Factory's ``set_attr``
  reads it; the same for ``tags``.
- alpaca: each ``history`` pair becomes a user and an assistant message; the user message is
  ``prompt`` and ``query`` joined by a newline (empty ones left out); ``response`` is the
  answer; ``system`` is the system column.
- sharegpt: a first message whose role is ``system_tag`` is the system prompt; the rest must
  alternate user (or observation) and assistant (or function) tags, an even number of them;
  the last is the answer. Broken examples are skipped, as LLaMA-Factory skips them.
- files ending in ``.jsonl`` hold one JSON object a line, others a JSON list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ALPACA_COLUMNS = ("system", "tools", "images", "chosen", "rejected", "kto_tag", "prompt", "query", "response",
                   "history")
_SHAREGPT_COLUMNS = ("system", "tools", "images", "chosen", "rejected", "kto_tag", "messages")
_TAGS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")
_DEFAULTS: dict[str, Any] = {
    "system": None, "tools": None, "images": None, "chosen": None, "rejected": None, "kto_tag": None,
    "prompt": "instruction", "query": "input", "response": "output", "history": None, "messages": "conversations",
    "role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
    "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system",
}


@dataclass(frozen=True)
class Example:
    """One training example as LLaMA-Factory's converters align it."""

    system: str
    prompt: list[dict[str, str]]
    response: list[dict[str, str]]


def dataset_attr(dataset_dir: Path, name: str) -> dict[str, Any]:
    """The attributes of dataset ``name`` from ``dataset_dir/dataset_info.json``, with LLaMA-Factory's defaults."""
    info = json.loads((Path(dataset_dir) / "dataset_info.json").read_text(encoding="utf-8"))
    if name not in info:
        raise ValueError(f"Undefined dataset {name} in dataset_info.json.")
    entry = info[name]
    attr = dict(_DEFAULTS)
    attr["file_name"] = entry["file_name"]
    attr["formatting"] = entry.get("formatting", "alpaca")
    if "columns" in entry:
        for column in _ALPACA_COLUMNS if attr["formatting"] == "alpaca" else _SHAREGPT_COLUMNS:
            attr[column] = entry["columns"].get(column)
    if attr["formatting"] == "sharegpt" and "tags" in entry:
        for tag in _TAGS:
            attr[tag] = entry["tags"].get(tag)
    return attr


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def _alpaca(example: dict[str, Any], attr: dict[str, Any]) -> Example:
    prompt: list[dict[str, str]] = []
    if attr["history"] and isinstance(example.get(attr["history"]), list):
        for old_prompt, old_response in example[attr["history"]]:
            prompt.append({"role": "user", "content": old_prompt})
            prompt.append({"role": "assistant", "content": old_response})
    query = [example[attr[key]] for key in ("prompt", "query") if attr[key] and example.get(attr[key])]
    prompt.append({"role": "user", "content": "\n".join(query)})
    response = ([{"role": "assistant", "content": example[attr["response"]]}]
                if attr["response"] and isinstance(example.get(attr["response"]), str) else [])
    return Example(example[attr["system"]] if attr["system"] else "", prompt, response)


def _sharegpt(example: dict[str, Any], attr: dict[str, Any]) -> Example | None:
    role, content = attr["role_tag"], attr["content_tag"]
    mapping = {attr["user_tag"]: "user", attr["assistant_tag"]: "assistant", attr["observation_tag"]: "observation",
               attr["function_tag"]: "function", attr["system_tag"]: "system"}
    accept = ((attr["user_tag"], attr["observation_tag"]), (attr["assistant_tag"], attr["function_tag"]))
    messages = example[attr["messages"]]
    if attr["system_tag"] and messages and messages[0][role] == attr["system_tag"]:
        system, messages = messages[0][content], messages[1:]
    else:
        system = example[attr["system"]] if attr["system"] else ""
    aligned = []
    for index, message in enumerate(messages):
        if message[role] not in accept[index % 2]:
            return None  # LLaMA-Factory: "Invalid role tag", the example is skipped
        aligned.append({"role": mapping[message[role]], "content": message[content]})
    if len(aligned) % 2:
        return None  # "Invalid message count"
    return Example(system, aligned[:-1], aligned[-1:])


def load(dataset_dir: Path, name: str) -> list[Example]:
    """Every usable example of dataset ``name`` in ``dataset_dir``, skipping broken ones as LLaMA-Factory does."""
    attr = dataset_attr(dataset_dir, name)
    convert = _alpaca if attr["formatting"] == "alpaca" else _sharegpt
    examples = [convert(record, attr) for record in _records(Path(dataset_dir) / attr["file_name"])]
    return [e for e in examples if e is not None]
