"""Advice: the vision model gets the downscaled image and the labels; suggestions come back as `advice` commands."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core.planners import PlannerUnavailable
from core.planners.advice import MAX_SIDE, AdviceImageError, advise
from core.settings import Settings
from tests.openai_fake_server import FakeOpenAIServer, Reply, strict_schema_problems

LABELS = ["Background", "Upper-clothes", "Face"]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def settings_for(server: FakeOpenAIServer, tmp_path: Path, **overrides: object) -> Settings:
    values = {"data_dir": tmp_path, "openai_base_url": server.base_url, "openai_api_key": "sk-test",
              "openai_model": "text-model", "vision_model": "vision-model", "openai_max_retries": 0}
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def sent_image(server: FakeOpenAIServer) -> Image.Image:
    content = server.requests[-1].messages[-1]["content"]
    url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
    header, data = url.split(",", 1)
    assert header == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_without_a_vision_model_advice_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(PlannerUnavailable, match="CHATEDIT_VISION_MODEL"):
        advise(png(8, 8), LABELS, Settings(data_dir=tmp_path, openai_model="text-model"))


def test_suggestions_become_advice_commands_next_to_executable_ones(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.script = [Reply(content=json.dumps({
        "reply": "A brighter, softer photo would suit it.",
        "advice": ["Brighten the whole photo a little.", "Blur the background to bring out the person."],
        "commands": [{"command": "adjust", "paras": ["brightness", 0.2, []]},
                     {"command": "blur", "targets": ["Background"], "strength": 0.4},
                     {"command": "remove", "targets": ["Hat"]}],
    }))]
    result = advise(png(2000, 1000), LABELS, settings_for(server, tmp_path))
    assert result.wire() == [
        {"command": "advice", "paras": ["Brighten the whole photo a little."]},
        {"command": "advice", "paras": ["Blur the background to bring out the person."]},
        {"command": "adjust", "paras": ["brightness", 0.2, []]},
        {"command": "blur", "paras": [["Background"], 0.4]},
    ]
    assert len(result.rejections) == 1 and "'Hat'" in result.rejections[0].reason
    assert result.reply.startswith("A brighter, softer photo would suit it.")

    request = server.requests[0]
    assert request.body["model"] == "vision-model"
    schema = request.response_format["json_schema"]["schema"]
    assert set(schema["required"]) == {"reply", "advice", "commands"}
    assert strict_schema_problems(schema) == [] and len(server.requests) == 1
    image = sent_image(server)
    assert max(image.size) <= MAX_SIDE and image.size == (768, 384)
    assert any("Upper-clothes" in str(m["content"]) for m in request.messages[:3])


def test_a_small_image_is_not_enlarged_and_chinese_advice_asks_in_chinese(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.script = [Reply(content=json.dumps({"reply": "背景可以虚化。", "advice": ["把背景虚化。"], "commands": []},
                                              ensure_ascii=False))]
    result = advise(png(300, 200), LABELS, settings_for(server, tmp_path), language="zh")
    assert result.language == "zh" and result.wire() == [{"command": "advice", "paras": ["把背景虚化。"]}]
    assert sent_image(server).size == (300, 200)
    text = next(p["text"] for p in server.requests[0].messages[-1]["content"] if p["type"] == "text")
    assert "建议" in text


def test_advice_falls_back_to_the_prompt_way_on_servers_without_structured_output(
        server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.rejects_response_format = True
    server.default = Reply(content='Try a softer background.\n[{"command": "advice", "paras": ["Blur the background."]},'
                                   ' {"command": "blur", "paras": [["Background"], 0.5]}]')
    result = advise(png(64, 64), LABELS, settings_for(server, tmp_path))
    assert [c.command for c in result.commands] == ["advice", "blur"]
    assert result.reply == "Try a softer background."
    assert "'advice' command" in server.requests[-1].messages[0]["content"]


def test_an_image_that_is_not_a_png_is_refused_before_any_request(server: FakeOpenAIServer, tmp_path: Path) -> None:
    with pytest.raises(AdviceImageError, match="not a readable PNG"):
        advise(b"GIF89a not a png", LABELS, settings_for(server, tmp_path))
    assert server.requests == []
