"""The local planner on a tiny random-weight Qwen2 model + LoRA adapter: valid commands by construction.

The model's content is nonsense; what is tested is that every answer decoded under the
command grammar is a schema-valid, validator-valid command array (100 prompts, 100
arrays), that unconstrained decoding of the same prompts is not, and that the planner
loads from CHATEDIT_LOCAL_LLM / CHATEDIT_LOCAL_LLM_ADAPTER and answers a real `plan` job.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from core.commands import validate
from core.planners import PlannerUnavailable, make_planner
from core.planners.constrained import command_grammar, complete_prefix
from core.planners.local_planner import LocalPlanner
from core.prompting import json_schema
from core.settings import load_settings
from db.migrate import upgrade
from jobs.planning import plan_request
from jobs.services import Services
from tests.conftest import running_worker
from tests.tiny_llm import LABELS, REQUESTS, save_tiny_adapter, save_tiny_planner

BATCH = 50


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny_llm")
    model = save_tiny_planner(root / "model")
    return model, save_tiny_adapter(model, root / "adapter")


@pytest.fixture(scope="module")
def planner(model_dirs: tuple[Path, Path]) -> LocalPlanner:
    """Short texts and at most 3 commands: the grammar's longest answer fits the token budget."""
    model, adapter = model_dirs
    tiny = LocalPlanner.load(str(model), str(adapter), max_commands=3, max_text_chars=16)
    tiny.max_new_tokens = tiny.grammar(LABELS).max_bytes + 1
    return tiny


def _valid(text: str, labels: list[str]) -> bool:
    """Parses, matches json_schema(labels), and passes the validator with at least one command."""
    try:
        items = json.loads(text)
        jsonschema.Draft202012Validator(json_schema(labels)).validate(items)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    outcome = validate(items, labels)
    return bool(outcome.commands) and not outcome.rejections


def _prompts(planner: LocalPlanner) -> list[str]:
    return [planner.prompt(f"{REQUESTS[i % len(REQUESTS)]} (#{i})", LABELS) for i in range(100)]


def test_the_local_planner_needs_its_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHATEDIT_LOCAL_LLM", raising=False)
    with pytest.raises(PlannerUnavailable, match="CHATEDIT_LOCAL_LLM"):
        make_planner("local", load_settings(data_dir=tmp_path))
    monkeypatch.setenv("CHATEDIT_LOCAL_LLM", str(tmp_path / "missing"))
    with pytest.raises(PlannerUnavailable, match="could not load CHATEDIT_LOCAL_LLM="):
        make_planner("local", load_settings(data_dir=tmp_path))


def test_the_planner_loads_model_and_adapter_from_settings(model_dirs: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    model, adapter = model_dirs
    monkeypatch.setenv("CHATEDIT_LOCAL_LLM", str(model))
    base = make_planner("local", load_settings(data_dir=tmp_path))
    monkeypatch.setenv("CHATEDIT_LOCAL_LLM_ADAPTER", str(adapter))
    tuned = make_planner("local", load_settings(data_dir=tmp_path))
    assert isinstance(tuned, LocalPlanner) and tuned.adapter == str(adapter) and base.adapter is None
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        assert not torch.allclose(base.model(ids).logits, tuned.model(ids).logits), "the LoRA adapter changes nothing"
    result = tuned.plan("把背景换成蓝天白云", labels=LABELS)
    assert result.language == "zh" and result.commands and not result.rejections
    assert result.reply.startswith("我会这样修改")


def test_100_prompts_give_100_valid_command_arrays_under_the_grammar(planner: LocalPlanner) -> None:
    import torch

    torch.manual_seed(0)
    prompts = _prompts(planner)
    answers = [a for i in range(0, len(prompts), BATCH)
               for a in planner.generate(prompts[i:i + BATCH], LABELS, do_sample=True)]
    assert len(answers) == 100
    assert [a.text for a in answers if a.truncated] == []
    assert [a.text for a in answers if not _valid(a.text, LABELS)] == []
    assert len({a.text for a in answers}) > 50, "sampling should walk many paths through the grammar"
    commands = {json.loads(a.text)[0]["command"] for a in answers}
    assert len(commands) >= 5, commands


def test_a_budget_below_the_reserve_still_closes_every_answer(planner: LocalPlanner) -> None:
    """The closing rule, and rows that end at different steps in one batch, on the packed bitmask."""
    import torch

    budget = 40
    assert budget < planner.grammar(LABELS).reserve
    torch.manual_seed(0)
    answers = planner.generate(_prompts(planner)[:16], LABELS, do_sample=True, max_new_tokens=budget)
    assert [a.text for a in answers if a.truncated or not _valid(a.text, LABELS)] == []
    assert len({a.tokens for a in answers}) > 1, "every row ended at the same step"


def test_the_thread_pool_path_writes_the_same_tokens_as_the_per_row_path(planner: LocalPlanner,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Where llguidance's pool has more than one thread (3 cores or more), a batch's rows go to it."""
    import llguidance
    import torch

    prompts = _prompts(planner)[:8]
    monkeypatch.setattr(planner.constraint, "threads", 1)
    torch.manual_seed(3)
    per_row = planner.generate(prompts, LABELS, do_sample=True)
    monkeypatch.setattr(planner.constraint, "threads", 2)
    monkeypatch.setattr(planner.constraint, "executor", llguidance.LLExecutor(2))
    torch.manual_seed(3)
    assert planner.generate(prompts, LABELS, do_sample=True) == per_row


def test_the_decode_loop_writes_what_transformers_generate_writes(planner: LocalPlanner) -> None:
    """Unconstrained and greedy, on left-padded prompts of different lengths: the same tokens as the library's loop."""
    import torch

    prompts = [planner.prompt(request, LABELS) for request in REQUESTS[:4]]
    ours = planner.generate(prompts, LABELS, constrained=False, max_new_tokens=24, stop_at_eos=False)
    inputs = planner.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert len(set(inputs["attention_mask"].sum(-1).tolist())) > 1, "the prompts should need padding"
    with torch.inference_mode():
        theirs = planner.model.generate(**inputs, max_new_tokens=24, do_sample=False, eos_token_id=planner._n_vocab,
                                        pad_token_id=planner.tokenizer.pad_token_id)
    texts = planner.tokenizer.batch_decode(theirs[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert [a.text for a in ours] == texts
    assert all(a.tokens == 24 and a.forwards == 24 for a in ours)


@pytest.fixture(scope="module")
def decisive_planner(model_dirs: tuple[Path, Path]) -> LocalPlanner:
    """The tiny planner with its weights scaled up: its greedy answers depend on the prompt (a random model's are
    otherwise all alike), and its scores are far apart, so float noise between equivalent computations picks nothing."""
    import torch

    planner = LocalPlanner.load(str(model_dirs[0]), str(model_dirs[1]), max_commands=3, max_text_chars=16)
    with torch.no_grad():
        for weight in planner.model.parameters():
            weight.mul_(5)
    return planner


LABEL_SETS = [LABELS, ["Hair"], [], ["Face", "Pants"], LABELS[2:], ["Background"]]


def _decode_rows(planner: LocalPlanner, rows: list[int]) -> tuple[list[list[int]], int]:
    """Greedy, under each row's own grammar (its own label set), in one batch."""
    from core.planners.constrained import CommandMasker
    from core.planners.decoding import decode

    grammars = [planner.grammar(LABEL_SETS[row]) for row in rows]
    masker = CommandMasker([planner.constraint.matcher(g) for g in grammars], planner.constraint,
                           budget=200, reserve=max(g.reserve for g in grammars))
    prompts = [planner.prompt(REQUESTS[row], LABEL_SETS[row]) for row in rows]
    inputs = planner.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    decoded = decode(planner.model, inputs["input_ids"], inputs["attention_mask"], budget=200,
                     eos_token_id=planner.eos_token_id, pad_token_id=planner.tokenizer.pad_token_id, masker=masker)
    return decoded.rows, decoded.forwards


def test_forced_tokens_skip_forward_passes_and_a_batch_decodes_as_each_row_alone(
        decisive_planner: LocalPlanner) -> None:
    """Jump-forward with rows that append different numbers of tokens: padding inside the batch changes nothing."""
    planner = decisive_planner
    together, forwards = _decode_rows(planner, list(range(len(LABEL_SETS))))
    alone = [_decode_rows(planner, [row]) for row in range(len(LABEL_SETS))]
    assert together == [rows[0] for rows, _ in alone]
    texts = [planner.tokenizer.decode(row[:-1]) for row in together]
    assert all(_valid(text, labels) for text, labels in zip(texts, LABEL_SETS, strict=True)), texts
    assert len({len(row) for row in together}) > 2, "the rows should differ in length"
    for row, (_, passes) in zip(together, alone, strict=True):
        assert passes < 0.8 * len(row), "forced tokens should not each take a forward pass"
    assert forwards < max(map(len, together))


def test_each_chosen_token_is_what_one_plain_pass_over_the_whole_answer_chooses(
        decisive_planner: LocalPlanner) -> None:
    """The cache, positions and masks of passes that carry forced tokens give the scores a plain forward pass gives.

    The answer is replayed through a fresh matcher: where the grammar forced a token it is
    skipped; where the model chose one, it must be the best allowed token under the scores
    of a single cache-free pass over prompt + answer.
    """
    import numpy as np
    import torch

    planner = decisive_planner
    constraint = planner.constraint
    for row in (0, 3):
        answer = _decode_rows(planner, [row])[0][0]
        prompt = planner.tokenizer(planner.prompt(REQUESTS[row], LABEL_SETS[row]), add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = planner.model(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1:]
        matcher = constraint.matcher(planner.grammar(LABEL_SETS[row]))
        words = np.zeros(constraint.words, dtype=np.int32)
        position, chosen = 0, 0
        while position < len(answer):
            matcher.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
            allowed = np.unpackbits(words.view(np.uint8), bitorder="little")[:logits.shape[-1]].astype(bool)
            best = int(torch.where(torch.from_numpy(allowed), logits[position], -torch.inf).argmax())
            assert answer[position] == best, f"token {position} of {planner.tokenizer.decode(answer)!r}"
            chosen += 1
            assert matcher.consume_token(answer[position])
            forced = [planner.eos_token_id] if matcher.is_stopped() else matcher.compute_ff_tokens()
            assert answer[position + 1:position + 1 + len(forced)] == forced[:len(answer) - position - 1]
            if forced and not matcher.is_stopped():
                assert matcher.consume_tokens(forced)
            position += 1 + len(forced)
        assert chosen < len(answer)


def test_the_same_prompts_unconstrained_are_mostly_invalid(planner: LocalPlanner) -> None:
    import torch

    torch.manual_seed(0)
    prompts = _prompts(planner)
    answers = [a for i in range(0, len(prompts), BATCH)
               for a in planner.generate(prompts[i:i + BATCH], LABELS, do_sample=True, constrained=False,
                                         max_new_tokens=48)]
    valid = sum(_valid(a.text, LABELS) for a in answers)
    print(f"unconstrained: {valid}/100 valid")
    assert valid < 100


@pytest.mark.parametrize("text", [
    '[{"command":"remove","paras":[["Hair","Hair"]]}]',  # uniqueItems
    '[{"command":"remove","paras":[["Upper-clothes","Hair"]]}]',  # out of the enum's order
    '[{"command":"remove","paras":[["Skin"]]}]',  # not a label of this image
    '[{"command":"adjust","paras":["brightness",2,[]]}]',  # maximum
    '[{"command":"blur","paras":[["Hair"],0]}]',  # exclusiveMinimum
    '[{"command":"style","paras":[" "]}]',  # blank text
    '[{"command":"recolor","paras":[["Hair"],"qqq"]}]',  # not a colour
    '[{"command":"face","paras":["x"],"extra":1}]',  # additionalProperties
    '[{"command":"rm -rf","paras":[]}]',  # not a command
    "[]",  # nothing: the prompt asks for advice instead
])
def test_the_grammar_refuses_what_the_contract_refuses(planner: LocalPlanner, text: str) -> None:
    matcher = planner.constraint.matcher(planner.grammar(LABELS))
    ids = planner.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert matcher.validate_tokens(ids) < len(ids) or not (matcher.consume_tokens(ids) and matcher.is_accepting())


def test_the_grammar_accepts_what_the_contract_accepts(planner: LocalPlanner) -> None:
    text = ('[{"command":"change","paras":[["Background","Upper-clothes"],"blue sky"]},'
            '{"command":"adjust","paras":["warmth",-0.25,[]]},{"command":"recolor","paras":[["Hair"],"红色"]}]')
    assert _valid(text, LABELS)
    matcher = planner.constraint.matcher(planner.grammar(LABELS))
    ids = planner.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert matcher.consume_tokens(ids) and matcher.is_accepting()


def test_an_image_without_labels_gets_whole_image_commands_only(planner: LocalPlanner) -> None:
    import torch

    torch.manual_seed(1)
    answers = planner.generate([planner.prompt("make it nicer", [])] * 8, [], do_sample=True)
    assert all(_valid(a.text, []) for a in answers), [a.text for a in answers]
    assert "cmd_remove" not in command_grammar([]).lark


def test_a_cut_answer_keeps_its_finished_commands() -> None:
    assert complete_prefix('[{"command":"style","paras":["a"]},{"command":"sty') == (
        '[{"command":"style","paras":["a"]}]', True)
    assert complete_prefix('[{"comm') == ("[]", True)
    assert complete_prefix('[{"command":"style","paras":["a"]}]') == ('[{"command":"style","paras":["a"]}]', False)


def test_a_plan_job_on_a_real_worker_uses_the_local_planner(model_dirs: tuple[Path, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    model, adapter = model_dirs
    monkeypatch.setenv("CHATEDIT_LOCAL_LLM", str(model))
    monkeypatch.setenv("CHATEDIT_LOCAL_LLM_ADAPTER", str(adapter))
    settings = load_settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'chatedit.db'}",
                             worker_poll_seconds=0.1, worker_heartbeat_seconds=0.3, planner="rules")
    services = Services.from_settings(settings)
    upgrade(services.database)
    try:
        with running_worker(services):
            result = plan_request(services, "make the shirt white", labels=LABELS, planner="local", timeout_s=120)
    finally:
        services.close()
    assert result.commands and not result.rejections
    assert _valid(json.dumps(result.wire()), LABELS)
    assert result.reply.startswith("Here is what I will do:")
