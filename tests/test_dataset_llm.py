"""LLM generation of dataset rows against the local OpenAI-compatible test server (no network).

The fake server speaks the real protocol, so the requests go through the real ``openai`` SDK
with the planner's client (its retries and backoff included). What a person would notice:
good requests become rows with their cost counted; bad ones (wrong language, a part the image
lacks, a request that means other commands) are kept aside with a reason; a failing server
ends in one sentence; Cancel stops the run; progress is reported.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from finetune.dataset_rows import DatasetRow
from finetune.evaluation import load_dataset, targets_of
from finetune.llm_generation import (
    FAILURE_LIMIT,
    GenerationFailed,
    generate_llm_rows,
    parse_request,
)
from tests.openai_fake_server import FakeOpenAIServer, Received, Reply, server_error

SEED_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed_chat_dataset.json"
LABELS = ("Background", "Hair", "Upper-clothes", "Face", "Pants")
API_KEY = "sk-test-secret-4242"


def row(language: str, *commands: dict[str, Any], labels: tuple[str, ...] = LABELS, request: str = "") -> DatasetRow:
    return DatasetRow(request=request or "template request", language=language, labels=labels,
                      commands=tuple(commands), source="template", origin="template:test")


WHITE_SHIRT = row("en", {"command": "recolor", "paras": [["Upper-clothes"], "white"]})
BLUR_BACKGROUND = row("en", {"command": "blur", "paras": [["Background"], 0.5]})
BRIGHTER = row("en", {"command": "adjust", "paras": ["brightness", 0.15, []]})
RED_HAIR_ZH = row("zh", {"command": "recolor", "paras": [["Hair"], "红色"]})
#: What a good model writes for each program above, keyed by the command line the prompt shows.
GOOD = {
    'recolor(targets=["Upper-clothes"], color="white")': "Could you make my shirt white?",
    'blur(targets=["Background"], strength=0.5)': "please blur the background",
    'adjust(property="brightness", amount=0.15, targets=[])': "brighten the photo a little",
    'recolor(targets=["Hair"], color="红色")': "把头发染成红色",
}


def command_lines(received: Received) -> list[str]:
    user = received.messages[-1]["content"]
    return [line[2:].split("):")[0] + ")" for line in user.splitlines() if line.startswith("- ")]


def answer(request: str) -> Reply:
    return Reply(content=json.dumps({"request": request}, ensure_ascii=False))


def good_responder(received: Received) -> Reply:
    return answer(GOOD[command_lines(received)[0]])


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def settings_for(server: FakeOpenAIServer, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path, "openai_base_url": server.base_url, "openai_model": "fake-model",
                              "openai_api_key": API_KEY, "openai_max_retries": 2, "openai_timeout_seconds": 10,
                              "openai_structured_output": "auto"}
    return Settings(**{**values, **overrides})


def seed_rows(count: int) -> list[DatasetRow]:
    """Real rows of the thesis' seed file whose requests the rule planner already reads right."""
    from core.planners.rule_planner import RulePlanner
    from core.rules import load_rules

    rules, planner = load_rules(), RulePlanner()
    found = []
    for sample in load_dataset(SEED_FILE):
        if sample.reference_items is None:
            continue
        reading = planner.plan(sample.request, labels=sample.labels).wire()
        if targets_of(reading, rules) == targets_of(sample.reference_items, rules) \
                and {c["command"] for c in reading} == {c["command"] for c in sample.reference_items}:
            found.append(DatasetRow(request=sample.request, language="zh", labels=sample.labels,
                                    commands=tuple(sample.reference_items), source="import",
                                    origin=f"seed_chat_dataset.json#{sample.index}"))
        if len(found) == count:
            return found
    raise AssertionError(f"The seed file has fewer than {count} rows the rule planner reads right.")


# -- a server that writes good requests ------------------------------------------------------------


def test_good_requests_become_checked_llm_rows_with_their_cost(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.responder = good_responder
    sources = [WHITE_SHIRT, BLUR_BACKGROUND, BRIGHTER, RED_HAIR_ZH]
    progress: list[tuple[int, int]] = []
    result = generate_llm_rows(settings_for(server, tmp_path), sources, mode="write", seed=100, concurrency=2,
                               on_progress=lambda done, total: progress.append((done, total)))

    assert [r.request for r in result.rows] == list(GOOD.values())
    assert result.rejected == []
    for made, source, seed in zip(result.rows, sources, range(100, 104), strict=True):
        assert (made.source, made.origin, made.seed) == ("llm", "fake-model", seed)
        assert (made.labels, made.commands, made.language) == (source.labels, source.commands, source.language)
        assert made.passed and {"language", "labels", "contract", "merge", "round_trip"} <= set(made.checks)
    assert result.requests == 4 and result.failures == 0
    assert result.prompt_tokens == 10 * 4  # the fake's usage: 10 prompt tokens, len(content) // 4 completion tokens
    assert result.completion_tokens == sum(len(json.dumps({"request": r}, ensure_ascii=False)) // 4
                                           for r in GOOD.values())
    assert progress == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    # Each row's seed went to the server, and the prompt named the labels and the language asked for.
    assert sorted(r.body["seed"] for r in server.requests) == [100, 101, 102, 103]
    zh_prompt = next(r for r in server.requests if r.body["seed"] == 103).messages[-1]["content"]
    assert "Hair" in zh_prompt and "Chinese" in zh_prompt
    assert all(r.response_format and r.response_format["type"] == "json_schema" for r in server.requests)


def test_requests_run_concurrency_at_a_time(server: FakeOpenAIServer, tmp_path: Path) -> None:
    together = threading.Barrier(3, timeout=10)  # answers only once three requests are in at the same time
    lock, in_flight, most = threading.Lock(), [0], [0]

    def responder(received: Received) -> Reply:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            together.wait()
        finally:
            with lock:
                in_flight[0] -= 1
        return good_responder(received)

    server.responder = responder
    sources = [WHITE_SHIRT, BLUR_BACKGROUND, BRIGHTER] * 2
    result = generate_llm_rows(settings_for(server, tmp_path, openai_max_retries=0), sources, mode="write", seed=0,
                               concurrency=3)

    assert len(result.rows) == 6 and most[0] == 3
    assert [r.request for r in result.rows] == [GOOD[k] for k in list(GOOD)[:3]] * 2  # in the sources' order


def test_paraphrases_of_real_seed_rows_are_kept(server: FakeOpenAIServer, tmp_path: Path) -> None:
    sources = seed_rows(3)
    server.responder = lambda received: answer("请" + received.messages[-1]["content"].split(
        "Request to rewrite: ")[1].splitlines()[0])
    result = generate_llm_rows(settings_for(server, tmp_path), sources, mode="paraphrase", seed=7)

    assert [r.request for r in result.rows] == ["请" + s.request for s in sources]
    assert all(r.passed and r.source == "llm" for r in result.rows)
    assert all("Request to rewrite" in r.messages[-1]["content"] for r in server.requests)


def test_template_rows_paraphrased_unchanged_keep_their_own_verdict(server: FakeOpenAIServer, tmp_path: Path) -> None:
    from core.planners.rule_planner import RulePlanner
    from finetune.dataset_checks import check_row, planner_plan, round_trip_check
    from finetune.templates import generate_template_rows

    sources = generate_template_rows(30, seed=11)
    server.responder = lambda received: answer(received.messages[-1]["content"].split(
        "Request to rewrite: ")[1].splitlines()[0])
    result = generate_llm_rows(settings_for(server, tmp_path), sources, mode="paraphrase", seed=11)

    reads_back = [s for s in sources if round_trip_check(check_row(s), planner_plan(RulePlanner())).passed]
    assert [r.request for r in result.rows] == [s.request for s in reads_back]
    assert len(result.rows) + len(result.rejected) == len(sources) and len(result.rows) >= len(sources) // 2
    assert {r.language for r in result.rows} == {"en", "zh"}
    seeds = {source.request: 11 + i for i, source in enumerate(sources)}
    assert all(made.source == "llm" and made.seed == seeds[made.request] for made in result.rows)


def test_a_server_without_structured_output_is_asked_the_prompt_way(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.rejects_response_format = True
    server.responder = lambda received: Reply(content='"' + GOOD[command_lines(received)[0]] + '"')
    result = generate_llm_rows(settings_for(server, tmp_path), [WHITE_SHIRT, BLUR_BACKGROUND], mode="write", seed=1,
                               concurrency=1)

    assert [r.request for r in result.rows] == ["Could you make my shirt white?", "please blur the background"]
    # Refused once, asked again without response_format, and then never offered it again.
    assert [r.response_format is not None for r in server.requests] == [True, False, False]


# -- a server that writes bad requests -------------------------------------------------------------


def test_invalid_requests_are_kept_aside_with_their_reasons(server: FakeOpenAIServer, tmp_path: Path) -> None:
    wrong_language = row("zh", {"command": "recolor", "paras": [["Hair"], "红色"]})
    missing_part = row("en", {"command": "remove", "paras": [["Hair"]]})
    other_commands = row("en", {"command": "recolor", "paras": [["Pants"], "blue"]})
    bad = {'recolor(targets=["Hair"], color="红色")': "make the hair red",
           'remove(targets=["Hair"])': "remove the hat",
           'recolor(targets=["Pants"], color="blue")': "blur the pants"}
    server.responder = lambda received: answer(bad[command_lines(received)[0]])
    result = generate_llm_rows(settings_for(server, tmp_path), [wrong_language, missing_part, other_commands],
                               mode="write", seed=0)

    assert result.rows == [] and result.requests == 3
    assert [made.request for made, _ in result.rejected] == ["make the hair red", "remove the hat", "blur the pants"]
    rejected = {made.request: reason for made, reason in result.rejected}
    assert "Chinese" in rejected["make the hair red"] and "English" in rejected["make the hair red"]
    assert "Hat" in rejected["remove the hat"]
    assert "blur" in rejected["blur the pants"] and "recolor" in rejected["blur the pants"]
    for made, reason in result.rejected:
        assert made.source == "llm" and made.origin == "fake-model" and not made.passed
        assert all(failure in reason for failure in made.failed_checks.values())


def test_one_bad_row_does_not_spoil_the_good_ones(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.responder = lambda received: answer(
        "blur the hair" if "Upper-clothes" in command_lines(received)[0] else GOOD[command_lines(received)[0]])
    result = generate_llm_rows(settings_for(server, tmp_path), [WHITE_SHIRT, BLUR_BACKGROUND, RED_HAIR_ZH],
                               mode="write", seed=0)

    assert [r.request for r in result.rows] == ["please blur the background", "把头发染成红色"]
    [(made, reason)] = result.rejected
    assert made.request == "blur the hair" and made.commands == WHITE_SHIRT.commands and reason


def test_an_answer_without_a_request_is_kept_aside(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.default = Reply(content=json.dumps({"request": "   "}))
    result = generate_llm_rows(settings_for(server, tmp_path), [WHITE_SHIRT], mode="write", seed=0)

    assert result.rows == []
    [(made, reason)] = result.rejected
    assert reason == "The model's answer held no request."


# -- a server that fails ---------------------------------------------------------------------------


def test_a_failing_server_is_retried_then_named_in_one_sentence(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.default = server_error(500)
    sources = [WHITE_SHIRT, BLUR_BACKGROUND, BRIGHTER, RED_HAIR_ZH, WHITE_SHIRT]
    with pytest.raises(GenerationFailed) as caught:
        generate_llm_rows(settings_for(server, tmp_path), sources, mode="write", seed=0, concurrency=1)

    message = str(caught.value)
    assert server.base_url in message and "HTTP 500" in message and "after 2 retries" in message
    assert API_KEY not in message and message.endswith(".") and message.count(". ") == 0
    # Every request was tried 1 + 2 times (the setting), and the run gave up after FAILURE_LIMIT of them.
    assert len(server.requests) == FAILURE_LIMIT * 3
    partial = caught.value.partial
    assert partial is not None and partial.failures == FAILURE_LIMIT and partial.rows == []
    assert [reason for _, reason in partial.rejected] == [message.split("; LLM generation")[0] + "."] * FAILURE_LIMIT


def test_a_small_batch_that_only_fails_is_an_error_too(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.default = server_error(503)
    with pytest.raises(GenerationFailed, match=r"failed \(HTTP 503\) after 0 retries"):
        generate_llm_rows(settings_for(server, tmp_path, openai_max_retries=0), [WHITE_SHIRT], mode="write", seed=0)
    assert len(server.requests) == 1


def test_a_passing_failure_is_retried_and_the_row_made(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.script = [server_error(500), server_error(503)]
    server.responder = good_responder
    result = generate_llm_rows(settings_for(server, tmp_path), [WHITE_SHIRT], mode="write", seed=0)

    assert [r.request for r in result.rows] == ["Could you make my shirt white?"]
    assert (result.requests, result.failures, len(server.requests)) == (1, 0, 3)


def test_no_model_configured_is_a_sentence(server: FakeOpenAIServer, tmp_path: Path) -> None:
    with pytest.raises(GenerationFailed, match=r"CHATEDIT_OPENAI_MODEL"):
        generate_llm_rows(settings_for(server, tmp_path, openai_model=None), [WHITE_SHIRT], mode="write", seed=0)
    assert server.requests == []


# -- Cancel and progress ---------------------------------------------------------------------------


def test_cancel_stops_the_run_and_returns_what_is_done(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.responder = good_responder
    progress: list[tuple[int, int]] = []
    sources = [WHITE_SHIRT, BLUR_BACKGROUND, BRIGHTER, RED_HAIR_ZH] * 5
    result = generate_llm_rows(settings_for(server, tmp_path), sources, mode="write", seed=0, concurrency=1,
                               on_progress=lambda done, total: progress.append((done, total)),
                               should_stop=lambda: len(progress) > 2)

    assert result.cancelled
    assert [r.request for r in result.rows] == ["Could you make my shirt white?", "please blur the background"]
    assert len(server.requests) == 2 and progress == [(0, 20), (1, 20), (2, 20)]


def test_cancel_does_not_wait_for_a_request_in_flight(server: FakeOpenAIServer, tmp_path: Path) -> None:
    release = threading.Event()

    def slow(received: Received) -> Reply:
        release.wait(10)
        return good_responder(received)

    server.responder = slow
    try:
        result = generate_llm_rows(settings_for(server, tmp_path), [WHITE_SHIRT, BLUR_BACKGROUND], mode="write",
                                   seed=0, concurrency=1, should_stop=lambda: len(server.requests) >= 1)
    finally:
        release.set()
    # The answer would have been a good row (after the server's wait); the run returned without waiting for it.
    assert result.cancelled and result.rows == [] and result.requests == 0 and len(server.requests) == 1


def test_cancel_before_the_start_sends_nothing(server: FakeOpenAIServer, tmp_path: Path) -> None:
    result = generate_llm_rows(settings_for(server, tmp_path), [WHITE_SHIRT], mode="write", seed=0,
                               should_stop=lambda: True)
    assert result.cancelled and result.rows == [] and server.requests == []


def test_an_unknown_mode_is_refused(server: FakeOpenAIServer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="write, paraphrase"):
        generate_llm_rows(settings_for(server, tmp_path), [WHITE_SHIRT], mode="translate", seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [
    ('{"request": "make the shirt white"}', "make the shirt white"),
    ('```json\n{"request": "把头发染成红色"}\n```', "把头发染成红色"),
    ('"blur the background"', "blur the background"),
    ("“把背景虚化”", "把背景虚化"),
    ("  brighten   the photo\n", "brighten the photo"),
    ('{"text": "no request key"}', ""),
    ("[1, 2]", ""),
])
def test_the_request_is_read_out_of_the_answers_models_give(text: str, expected: str) -> None:
    assert parse_request(text) == expected
