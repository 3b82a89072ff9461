"""The OpenAI-compatible planner against a local server speaking the real protocol (no network).

The fake is first held to the protocol: the real ``openai`` SDK, validating responses
strictly, parses its completions, its streams and its errors. Then the planner: the schema
the server received, retries, the prompt fallback, multi-turn messages, streaming, errors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from click.testing import CliRunner

from core.planners import ChatTurn, PlannerUnavailable, PlanResult, make_planner
from core.planners.messages import LABELS_ANSWER, LABELS_QUESTION
from core.planners.openai_planner import (
    OpenAIPlanner,
    PlanningError,
    ReplyPreview,
    api_schema,
)
from core.settings import Settings
from tests.openai_fake_server import (
    FakeOpenAIServer,
    Received,
    Reply,
    rate_limited,
    server_error,
    strict_schema_problems,
)

LABELS = ["Background", "Hair", "Upper-clothes", "Face"]
WHITE_SHIRT = {"command": "recolor", "paras": [["Upper-clothes"], "white"]}
#: WHITE_SHIRT as a model under the strict schema writes it: paras by name.
WHITE_SHIRT_NAMED = {"command": "recolor", "targets": ["Upper-clothes"], "color": "white"}


def structured(reply: str, *commands: dict[str, Any]) -> Reply:
    return Reply(content=json.dumps({"reply": reply, "commands": list(commands)}, ensure_ascii=False))


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def settings_for(server: FakeOpenAIServer, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path, "openai_base_url": server.base_url, "openai_model": "fake-model",
                              "openai_api_key": "sk-test", "openai_max_retries": 2, "openai_timeout_seconds": 10,
                              "openai_structured_output": "auto"}
    return Settings(**{**values, **overrides})


@pytest.fixture
def planner(server: FakeOpenAIServer, tmp_path: Path) -> OpenAIPlanner:
    return OpenAIPlanner.from_settings(settings_for(server, tmp_path))


def target_enums(schema: Any) -> list[list[str]]:
    """Every ``enum`` under an array's ``items`` in ``schema``: the allowed targets."""
    found: list[list[str]] = []
    if isinstance(schema, dict):
        items = schema.get("items")
        if schema.get("type") == "array" and isinstance(items, dict) and "enum" in items:
            found.append(items["enum"])
        for value in schema.values():
            found += target_enums(value)
    elif isinstance(schema, list):
        for value in schema:
            found += target_enums(value)
    return found


# -- the fake speaks the protocol ---------------------------------------------------------------


def test_the_sdk_parses_the_fakes_completions_streams_and_errors_strictly(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0,
                           _strict_response_validation=True)
    messages = [{"role": "user", "content": "hi"}]
    server.script = [Reply(content="hello there")]
    completion = client.chat.completions.create(model="fake-model", messages=messages)
    assert completion.choices[0].message.content == "hello there"
    assert completion.choices[0].finish_reason == "stop" and completion.usage is not None

    server.script = [Reply(content="hello there, streaming", chunk_chars=4)]
    stream = client.chat.completions.create(model="fake-model", messages=messages, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello there, streaming"
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage is not None

    server.script = [rate_limited(), Reply(status=400, error_message="bad schema")]
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fake-model", messages=messages)
    with pytest.raises(openai.BadRequestError, match="bad schema"):
        client.chat.completions.create(model="fake-model", messages=messages)
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


# -- structured output --------------------------------------------------------------------------


def test_the_schema_the_server_received_lists_exactly_this_images_labels(
        server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [structured("I will make the shirt white.", WHITE_SHIRT_NAMED)]
    result = planner.plan("make the shirt white", labels=LABELS)
    assert result.wire() == [WHITE_SHIRT]
    assert result.reply == "I will make the shirt white."
    assert len(server.requests) == 1  # the fake, like OpenAI, refuses schemas outside the strict subset

    response_format = server.requests[0].response_format
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert strict_schema_problems(schema) == []
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"]) == {"reply", "commands"}
    assert schema["properties"]["commands"]["type"] == "array"
    enums = target_enums(schema)
    assert enums and all(sorted(enum) == sorted(LABELS) for enum in enums)


def commands_offered(schema: dict[str, Any]) -> set[str]:
    return {c["properties"]["command"]["enum"][0] for c in schema["properties"]["commands"]["items"]["anyOf"]}


def test_face_commands_are_only_offered_when_the_image_has_a_face() -> None:
    assert "face" not in commands_offered(api_schema(["Background"]))
    assert "change" in commands_offered(api_schema(["Background"]))
    assert "face" in commands_offered(api_schema(["Background", "Face"]))


def test_the_fake_refuses_a_schema_outside_the_strict_subset_as_openai_does(server: FakeOpenAIServer) -> None:
    from core.prompting import json_schema

    positional = {k: v for k, v in json_schema(LABELS).items() if k not in ("$schema", "title")}
    old = {"type": "object", "properties": {"reply": {"type": "string"}, "commands": positional},
           "required": ["reply", "commands"], "additionalProperties": False}
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="prefixItems"):
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                       response_format={"type": "json_schema", "json_schema": {
                                           "name": "old", "strict": True, "schema": old}})
    assert any("paras[]: a schema must be an object, not False" in p for p in strict_schema_problems(old))
    assert any("const" in p for p in strict_schema_problems(old))


def test_named_answers_become_wire_commands_and_are_still_validated(
        server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [structured("Done.",
                                {"command": "blur", "targets": ["Background"], "strength": 0.5},
                                {"command": "adjust", "property": "warmth", "amount": -0.3, "targets": []},
                                {"command": "recolor", "targets": ["Skin"], "color": "white"},
                                {"command": "blur", "targets": ["Background"], "strength": 0},
                                {"command": "recolor", "targets": ["Hair"], "color": "qqq"},
                                {"command": "face", "prompt": "smile", "model": "../../etc/passwd"},
                                {"command": "change", "targets": ["Hair"]},
                                WHITE_SHIRT)]
    result = planner.plan("soften it", labels=LABELS)
    assert result.wire() == [{"command": "blur", "paras": [["Background"], 0.5]},
                             {"command": "adjust", "paras": ["warmth", -0.3, []]},
                             WHITE_SHIRT]
    reasons = [r.reason for r in result.rejections]
    assert len(reasons) == 5
    assert "no 'Skin'" in reasons[0]
    assert "outside (0, 1]" in reasons[1]
    assert "not a colour" in reasons[2]
    assert "unexpected fields model" in reasons[3]
    assert "takes 2 parameter(s)" in reasons[4]


def test_a_streamed_named_answer_becomes_wire_commands(server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [Reply(content=json.dumps({"reply": "White it is.", "commands": [WHITE_SHIRT_NAMED]}),
                           chunk_chars=4)]
    *deltas, final = planner.plan_stream("make the shirt white", labels=LABELS)
    assert "".join(deltas) == final.reply == "White it is."
    assert final.wire() == [WHITE_SHIRT]


def test_commands_outside_the_contract_are_rejected_with_reasons(
        server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [structured("Done.", WHITE_SHIRT,
                                {"command": "shell", "paras": ["rm -rf /"]},
                                {"command": "change", "paras": [["Skin"], "tan"]},
                                {"command": "blur", "paras": [["Background"], 7]})]
    result = planner.plan("make the shirt white", labels=LABELS)
    assert result.wire() == [WHITE_SHIRT]
    reasons = [r.reason for r in result.rejections]
    assert len(reasons) == 3
    assert "'shell' is not a command" in reasons[0]
    assert "no 'Skin'" in reasons[1]
    assert "outside" in reasons[2]
    assert all(reason in result.reply for reason in reasons)


def test_a_malformed_reply_is_reported_not_guessed(server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [Reply(content='{"reply": "ok", "commands": [{"command": "recolor", "paras": [["Upp')]
    result = planner.plan("make the shirt white", labels=LABELS)
    assert result.commands == [] and result.rejections == []
    assert result.not_understood and "no list of commands" in result.not_understood[0].reason


def test_a_reply_of_json_only_gets_a_readable_summary(server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [structured("", WHITE_SHIRT)]
    result = planner.plan("make the shirt white", labels=LABELS)
    assert "Upper-clothes" in result.reply and "white" in result.reply and "{" not in result.reply


def test_a_model_refusal_is_the_reply_and_no_commands(server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [Reply(refusal="I can't help with that.")]
    result = planner.plan("make the shirt white", labels=LABELS)
    assert result.commands == [] and result.reply == "I can't help with that."


# -- retries and errors -------------------------------------------------------------------------


def test_a_429_then_success_is_retried(server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [rate_limited(), structured("ok", WHITE_SHIRT)]
    assert planner.plan("make the shirt white", labels=LABELS).wire() == [WHITE_SHIRT]
    assert len(server.requests) == 2


def test_5xx_errors_are_retried_with_backoff_up_to_the_setting(server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [server_error(503), server_error(500), structured("ok", WHITE_SHIRT)]
    assert planner.plan("make the shirt white", labels=LABELS).wire() == [WHITE_SHIRT]
    assert len(server.requests) == 3


def test_rate_limiting_beyond_the_retries_is_a_sentence(server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [rate_limited() for _ in range(3)]
    with pytest.raises(PlanningError, match=r"rate limiting requests and still was after 2 retries") as caught:
        planner.plan("make the shirt white", labels=LABELS)
    assert len(server.requests) == 3
    assert isinstance(caught.value, PlannerUnavailable) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("reply", "sentence"), [
    (Reply(status=401, error_type="invalid_api_key", error_message="Incorrect API key"), "refused the API key"),
    (Reply(status=404, error_message="The model does not exist"), "has no model 'fake-model'"),
    (Reply(status=400, error_message="messages too long"), "rejected the request .HTTP 400.: messages too long"),
])
def test_http_errors_are_sentences(server: FakeOpenAIServer, tmp_path: Path, reply: Reply, sentence: str) -> None:
    planner = OpenAIPlanner.from_settings(settings_for(server, tmp_path, openai_structured_output="prompt"))
    server.script = [reply]
    with pytest.raises(PlanningError, match=sentence):
        planner.plan("make the shirt white", labels=LABELS)


def test_an_unreachable_server_and_a_silent_one_are_sentences(server: FakeOpenAIServer, tmp_path: Path) -> None:
    closed = FakeOpenAIServer()
    url = closed.base_url
    closed._httpd.server_close()
    planner = OpenAIPlanner.from_settings(settings_for(server, tmp_path, openai_base_url=url, openai_max_retries=0))
    with pytest.raises(PlanningError, match="Could not reach the server at http://127.0.0.1"):
        planner.plan("make the shirt white", labels=LABELS)

    release = threading.Event()

    def silent(_: Received) -> Reply:
        release.wait(10)
        return structured("late")

    server.responder = silent
    planner = OpenAIPlanner.from_settings(settings_for(server, tmp_path, openai_timeout_seconds=0.2,
                                                       openai_max_retries=0))
    try:
        with pytest.raises(PlanningError, match=r"did not answer within 0.2 s \(CHATEDIT_OPENAI_TIMEOUT_SECONDS\)"):
            planner.plan("make the shirt white", labels=LABELS)
    finally:
        release.set()


def test_configuration_problems_name_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(PlannerUnavailable, match="CHATEDIT_OPENAI_MODEL"):
        make_planner("openai", Settings(data_dir=tmp_path))
    with pytest.raises(PlannerUnavailable, match="OPENAI_API_KEY"):
        make_planner("openai", Settings(data_dir=tmp_path, openai_model="gpt-4o-mini"))
    local = make_planner("openai", Settings(data_dir=tmp_path, openai_model="llama3.2",
                                            openai_base_url="http://127.0.0.1:11434/v1"))
    assert isinstance(local, OpenAIPlanner)  # local servers need no key


# -- the prompt path ----------------------------------------------------------------------------


def test_a_server_that_refuses_response_format_is_asked_the_prompt_way_and_remembered(
        server: FakeOpenAIServer, planner: OpenAIPlanner, tmp_path: Path) -> None:
    server.rejects_response_format = True
    server.default = Reply(content='Making the shirt white.\n```json\n[{"command": "recolor", '
                                   '"paras": [["Upper-clothes"], "white"]}]\n```')
    result = planner.plan("make the shirt white", labels=LABELS)
    assert result.wire() == [WHITE_SHIRT]
    assert result.reply == "Making the shirt white."
    assert [r.response_format is not None for r in server.requests] == [True, False]
    assert "Before the array" in server.requests[1].messages[0]["content"]

    again = OpenAIPlanner.from_settings(settings_for(server, tmp_path))  # a new planner, same server and model
    assert again.mode() == "prompt"
    again.plan("make the shirt white", labels=LABELS)
    assert [r.response_format is not None for r in server.requests] == [True, False, False]


def test_json_schema_mode_says_so_when_the_server_refuses_it(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.rejects_response_format = True
    planner = OpenAIPlanner.from_settings(settings_for(server, tmp_path, openai_structured_output="json_schema"))
    with pytest.raises(PlanningError, match="refused structured output .*CHATEDIT_OPENAI_STRUCTURED_OUTPUT"):
        planner.plan("make the shirt white", labels=LABELS)
    assert len(server.requests) == 1


def test_prompt_mode_never_sends_response_format(server: FakeOpenAIServer, tmp_path: Path) -> None:
    planner = OpenAIPlanner.from_settings(settings_for(server, tmp_path, openai_structured_output="prompt"))
    server.default = Reply(content=json.dumps([WHITE_SHIRT]))
    assert planner.plan("make the shirt white", labels=LABELS).wire() == [WHITE_SHIRT]
    assert server.requests[0].response_format is None


# -- multi-turn ---------------------------------------------------------------------------------


def test_the_conversation_and_the_labels_turn_go_to_the_model_in_the_persons_language(
        server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    conversation = [ChatTurn("user", "把衣服变成白色"), ChatTurn("assistant", "好的，衣服会变成白色。")]
    server.script = [structured("好的，头发也变成黑色。", {"command": "recolor", "paras": [["Hair"], "黑色"]})]
    result = planner.plan("头发也改成黑色", labels=LABELS, conversation=conversation)
    assert result.language == "zh" and result.reply == "好的，头发也变成黑色。"
    assert result.wire() == [{"command": "recolor", "paras": [["Hair"], "黑色"]}]

    messages = server.requests[0].messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "这张图片的部分" in messages[0]["content"] and "中文" in messages[0]["content"]
    assert messages[1]["content"] == LABELS_QUESTION["zh"]
    assert messages[2]["content"].startswith(LABELS_ANSWER["zh"])
    assert all(label in messages[2]["content"] for label in LABELS)
    assert [m["content"] for m in messages[3:]] == ["把衣服变成白色", "好的，衣服会变成白色。", "头发也改成黑色"]


# -- streaming ----------------------------------------------------------------------------------


def test_the_reply_streams_as_text_then_the_result(server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [Reply(content=json.dumps({"reply": 'I\'ll make the "shirt" white —\n白色.',
                                               "commands": [WHITE_SHIRT]}), chunk_chars=3)]
    events = list(planner.plan_stream("make the shirt white", labels=LABELS))
    *deltas, final = events
    assert isinstance(final, PlanResult) and final.wire() == [WHITE_SHIRT]
    assert len(deltas) > 3 and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == final.reply == 'I\'ll make the "shirt" white —\n白色.'
    assert server.requests[0].body["stream"] is True


def test_in_prompt_mode_only_the_prose_streams(server: FakeOpenAIServer, tmp_path: Path) -> None:
    planner = OpenAIPlanner.from_settings(settings_for(server, tmp_path, openai_structured_output="prompt"))
    server.script = [Reply(content="Sure: a white shirt.\n```json\n" + json.dumps([WHITE_SHIRT]) + "\n```",
                           chunk_chars=2)]
    *deltas, final = planner.plan_stream("make the shirt white", labels=LABELS)
    assert "".join(deltas).strip() == final.reply == "Sure: a white shirt."
    assert final.wire() == [WHITE_SHIRT]


def test_a_stream_that_fails_before_it_starts_is_a_sentence(server: FakeOpenAIServer, planner: OpenAIPlanner) -> None:
    server.script = [rate_limited() for _ in range(3)]
    with pytest.raises(PlanningError, match="rate limiting"):
        list(planner.plan_stream("make the shirt white", labels=LABELS))


@pytest.mark.parametrize("size", [1, 2, 5])
def test_the_preview_decodes_escapes_cut_across_chunks(size: int) -> None:
    text = json.dumps({"reply": 'a "quoted" \\ line\nand 中文 \u00e9', "commands": []}, ensure_ascii=True)
    preview = ReplyPreview(structured=True)
    shown = "".join(preview.feed(text[i:i + size]) for i in range(0, len(text), size))
    assert shown == 'a "quoted" \\ line\nand 中文 \u00e9'


# -- wiring -------------------------------------------------------------------------------------


def test_chatedit_plan_with_the_openai_planner(server: FakeOpenAIServer, tmp_path: Path) -> None:
    from app.cli import cli

    server.default = structured("Making the shirt white.", WHITE_SHIRT)
    env = {"CHATEDIT_DATA_DIR": str(tmp_path), "CHATEDIT_OPENAI_BASE_URL": server.base_url,
           "CHATEDIT_OPENAI_MODEL": "fake-model", "CHATEDIT_OPENAI_API_KEY": "sk-test",
           "CHATEDIT_OPENAI_STRUCTURED_OUTPUT": "auto"}
    result = CliRunner().invoke(cli, ["plan", "--planner", "openai", "--labels", ",".join(LABELS),
                                      "make the shirt white"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [WHITE_SHIRT]
