"""The planner for any OpenAI-compatible chat API: OpenAI, vLLM, Ollama, llama.cpp server, LM Studio.

One client per planner (the ``openai`` SDK with the configured base URL, key, timeout and
retries: the SDK retries 408/409/429/5xx and dropped connections with exponential
backoff, honouring ``Retry-After``). Two ways to get commands out of a model:

- ``json_schema``: structured output with a strict JSON Schema generated from the rules
  and this image's labels, so a server that enforces it cannot name a part the image
  lacks. The schema is :func:`core.prompting.openai_strict_schema`, in the subset of JSON
  Schema that OpenAI's strict mode accepts: an object ``{"reply": str, "commands": [...]}``
  whose commands carry their paras *by name* (``{"command": "blur", "targets": [...],
  "strength": 0.5}``), because positional tuples need ``prefixItems``/``items: false``,
  which strict mode refuses. The answer is turned back into the wire format with
  :func:`core.prompting.named_to_wire` and then validated like any planner's.
- ``prompt``: the system prompt asks for a JSON array after a sentence of prose and
  :func:`core.commands.extract_commands` finds it, for servers without structured output.

One schema for every server: the strict subset is plain JSON Schema (objects, arrays,
``enum``, ``anyOf``, anchored ``pattern``, numeric bounds), which vLLM (xgrammar,
guidance), Ollama and llama.cpp's grammar converter take as well; sending the positional
2020-12 schema to servers that could follow it would buy nothing (every command is
validated afterwards either way) and would be a second request shape to keep right.
Answers in the wire format (a server that ignored the schema) pass through unchanged.

``auto`` (the default) starts with ``json_schema`` and, when a server answers that request
with HTTP 400/422, repeats it once the ``prompt`` way; if that works, the server and model
are remembered as prompt-only for the life of the process. Whatever the model writes is
parsed by :mod:`core.planners.safety` against the contract and the image's labels.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import openai

from core.planners.base import (
    ChatTurn,
    Language,
    PlannerUnavailable,
    PlanResult,
    detect_language,
)
from core.planners.messages import build_messages
from core.planners.safety import clip_conversation, refuse_overlong, result_from_reply
from core.prompting import named_to_wire, openai_strict_schema
from core.rules import Rules, load_rules
from core.text import hide_credentials

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)

Mode = Literal["json_schema", "prompt"]
OPENAI_URL = "https://api.openai.com/v1"
#: Local servers (Ollama, llama.cpp, LM Studio, vLLM without --api-key) ignore the key but the SDK wants one.
UNUSED_KEY = "not-needed"
SCHEMA_NAME = "chatedit_commands"
#: (base URL, model) pairs whose server refused ``response_format``: they are asked the prompt way from then on.
_PROMPT_ONLY: set[tuple[str, str]] = set()

_LANGUAGE_NAME = {"en": "English", "zh": "中文"}
_STRUCTURED_NOTE = {
    "en": ('Answer with a JSON object: "reply" is one or two sentences for the person, in {language}, saying what '
           'you will do (or why you cannot); "commands" is the array of commands, each an object with "command" '
           'and its paras by name (the same paras as above, e.g. {{"command": "recolor", "targets": [...], '
           '"color": "white"}}).'),
    "zh": ('请回复一个 JSON 对象："reply" 是给用户的一两句话（用{language}），说明你会做什么（或为什么做不到）；'
           '"commands" 是命令数组，每个命令是一个对象，含 "command" 和按名称给出的参数（即上面的 paras，例如 '
           '{{"command": "recolor", "targets": [...], "color": "white"}}）。'),
}
_ADVICE_NOTE = {
    "json_schema": {"en": '"advice" is the list of your suggestions, each a short sentence in {language}.',
                    "zh": '"advice" 是你的建议列表，每条是一句简短的{language}。'},
    "prompt": {"en": "Write each suggestion as an 'advice' command in the array, in {language}.",
               "zh": "把每条建议写成数组里的一个 'advice' 命令，用{language}。"},
}
_PROSE_NOTE = {
    "en": "Before the array, write one or two sentences for the person, in {language}, saying what you will do.",
    "zh": "在数组之前，用{language}写一两句话告诉用户你会做什么。",
}


class PlanningError(PlannerUnavailable):
    """The server was configured but gave no usable answer (unreachable, refused, rate limited, failed).

    A :class:`PlannerUnavailable`, so every caller that reports an unavailable planner
    reports this too; the message is one sentence naming the server and what to do.
    """


def api_schema(labels: Sequence[str], rules: Rules | None = None, *, advice: bool = False) -> dict[str, Any]:
    """The strict JSON Schema sent as ``response_format``: :func:`core.prompting.openai_strict_schema`."""
    return openai_strict_schema(labels, rules, advice=advice)


def wire_reply(text: str, rules: Rules | None = None) -> str:
    """A structured answer with its named commands put back in the wire format; any other text unchanged.

    Only the shape changes (:func:`core.prompting.named_to_wire`); whether a command is
    valid is for the validator to say, as for every planner.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if not isinstance(value, dict) or not isinstance(value.get("commands"), list):
        return text
    value["commands"] = [named_to_wire(item, rules) for item in value["commands"]]
    return json.dumps(value, ensure_ascii=False)


def make_client(settings: Settings) -> openai.OpenAI:
    """The SDK client for the configured server; :class:`PlannerUnavailable` when OpenAI itself is meant and no key is set."""
    base_url = settings.openai_base_url
    options: dict[str, Any] = {"base_url": base_url, "timeout": settings.openai_timeout_seconds,
                               "max_retries": settings.openai_max_retries}
    try:
        return openai.OpenAI(api_key=settings.openai_api_key, **options)
    except openai.OpenAIError:
        if base_url:
            return openai.OpenAI(api_key=UNUSED_KEY, **options)
        raise PlannerUnavailable("The openai planner needs an API key: set OPENAI_API_KEY or CHATEDIT_OPENAI_API_KEY, "
                                 "or point CHATEDIT_OPENAI_BASE_URL at a local server.") from None


def _status_sentence(exc: openai.APIStatusError, where: str, model: str, retries: int) -> str:
    detail = _server_message(exc)
    status = exc.status_code
    if status in (401, 403):
        return (f"The server at {where} refused the API key (HTTP {status}); check OPENAI_API_KEY or "
                f"CHATEDIT_OPENAI_API_KEY.")
    if status == 404:
        return (f"The server at {where} has no model {model!r} or no chat completions endpoint (HTTP 404); "
                f"check CHATEDIT_OPENAI_MODEL and CHATEDIT_OPENAI_BASE_URL.")
    if status == 429:
        return (f"The server at {where} is rate limiting requests and still was after {retries} "
                f"retr{'y' if retries == 1 else 'ies'}; try again in a minute.")
    if status >= 500:
        return f"The server at {where} failed (HTTP {status}) after {retries} retr{'y' if retries == 1 else 'ies'}{detail}."
    return f"The server at {where} rejected the request (HTTP {status}){detail}."


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip():
        return ""
    message = " ".join(message.split())
    return ": " + (message if len(message) <= 200 else message[:200] + "…").rstrip(".")


def planning_error(exc: openai.OpenAIError, *, where: str, model: str, timeout: float, retries: int) -> PlanningError:
    """One sentence for what went wrong talking to the server (the SDK's exceptions are for developers)."""
    if isinstance(exc, openai.APITimeoutError):
        return PlanningError(f"The server at {where} did not answer within {timeout:g} s "
                             f"(CHATEDIT_OPENAI_TIMEOUT_SECONDS).")
    if isinstance(exc, openai.APIConnectionError):
        return PlanningError(f"Could not reach the server at {where}; is it running, and is CHATEDIT_OPENAI_BASE_URL right?")
    if isinstance(exc, openai.APIStatusError):
        return PlanningError(_status_sentence(exc, where, model, retries))
    if isinstance(exc, openai.APIResponseValidationError):
        return PlanningError(f"The server at {where} answered in a form that is not the chat completions API.")
    text = " ".join(hide_credentials(str(exc)).split())[:200].rstrip(".")
    return PlanningError(f"The conversation with the server at {where} failed: {text}.")


class OpenAIPlanner:
    """Commands from an OpenAI-compatible chat model (``CHATEDIT_PLANNER=openai``)."""

    name = "openai"

    def __init__(self, client: openai.OpenAI, model: str, *, structured_output: str = "auto",
                 rules: Rules | None = None) -> None:
        if structured_output not in ("auto", "json_schema", "prompt"):
            raise ValueError(f"structured_output must be auto, json_schema or prompt, not {structured_output!r}.")
        self.client = client
        self.model = model
        self.structured_output = structured_output
        self.rules = rules or load_rules()
        self.where = hide_credentials(str(client.base_url).rstrip("/"))  # a password in the URL is never shown

    @classmethod
    def from_settings(cls, settings: Settings, *, model: str | None = None) -> OpenAIPlanner:
        """The planner the settings describe; ``model`` overrides ``CHATEDIT_OPENAI_MODEL`` (advice uses the vision model)."""
        model = model or settings.openai_model
        if not model:
            raise PlannerUnavailable("The openai planner needs a model: set CHATEDIT_OPENAI_MODEL (e.g. gpt-4o-mini, "
                                     "or the name your vLLM, Ollama or llama.cpp server serves).")
        return cls(make_client(settings), model, structured_output=settings.openai_structured_output)

    # -- the Planner interface -------------------------------------------------------------

    def plan(self, request: str, *, labels: Sequence[str], conversation: Sequence[ChatTurn] = ()) -> PlanResult:
        """The model's commands for ``request``, validated against ``labels``; raises :class:`PlanningError`."""
        language = detect_language(request)
        refusal = refuse_overlong(request, language, self.rules)
        if refusal is not None:
            return refusal
        messages = build_messages(request, labels, clip_conversation(conversation), language=language, rules=self.rules)
        return self.complete(messages, labels=labels, language=language, request=request)

    def plan_stream(self, request: str, *, labels: Sequence[str],
                    conversation: Sequence[ChatTurn] = ()) -> Iterator[str | PlanResult]:
        """Text deltas of the reply as the model writes them, then the final :class:`PlanResult`.

        The deltas are a preview for the chat (the prose, or the ``reply`` field as it is
        decoded; the JSON never shows); the final result's ``reply`` is the text to keep.
        Raises :class:`PlanningError` (before the first delta, or mid-stream).
        """
        language = detect_language(request)
        refusal = refuse_overlong(request, language, self.rules)
        if refusal is not None:
            yield refusal.reply
            yield refusal
            return
        messages = build_messages(request, labels, clip_conversation(conversation), language=language, rules=self.rules)
        stream, mode = self._create(messages, labels, language, stream=True)
        preview = ReplyPreview(structured=mode == "json_schema")
        parts: list[str] = []
        try:
            for chunk in stream:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                piece = delta.content or getattr(delta, "refusal", None) or ""
                parts.append(piece)
                shown = preview.feed(piece)
                if shown:
                    yield shown
        except openai.OpenAIError as exc:
            raise self._error(exc) from None
        finally:
            stream.close()
        yield result_from_reply(wire_reply("".join(parts), self.rules), labels, request=request, language=language,
                                rules=self.rules)

    # -- shared with advice ------------------------------------------------------------------

    def complete(self, messages: list[dict[str, Any]], *, labels: Sequence[str], language: Language, request: str,
                 advice: bool = False) -> PlanResult:
        """One chat completion turned into a validated :class:`PlanResult`."""
        response, _ = self._create(messages, labels, language, stream=False, advice=advice)
        if not response.choices:
            raise PlanningError(f"The server at {self.where} answered with no message.")
        message = response.choices[0].message
        text = message.content or getattr(message, "refusal", None) or ""
        return result_from_reply(wire_reply(text, self.rules), labels, request=request, language=language,
                                 rules=self.rules)

    def mode(self) -> Mode:
        """How the next request asks for commands: structured output, or prompt + extraction."""
        if self.structured_output == "prompt" or (self.where, self.model) in _PROMPT_ONLY:
            return "prompt"
        return "json_schema"

    def _create(self, messages: list[dict[str, Any]], labels: Sequence[str], language: Language, *, stream: bool,
                advice: bool = False) -> tuple[Any, Mode]:
        mode = self.mode()
        try:
            return self._request(messages, labels, language, mode, stream=stream, advice=advice), mode
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if mode != "json_schema":
                raise self._error(exc) from None
            if self.structured_output == "json_schema":
                raise PlanningError(
                    f"The server at {self.where} refused structured output (response_format json_schema)"
                    f"{_server_message(exc)}; set CHATEDIT_OPENAI_STRUCTURED_OUTPUT=auto or prompt.") from None
            log.info("%s refused response_format for %s (%s); asking the prompt way", self.where, self.model,
                     hide_credentials(str(exc)))
        except openai.OpenAIError as exc:
            raise self._error(exc) from None
        try:
            answer = self._request(messages, labels, language, "prompt", stream=stream, advice=advice)
        except openai.OpenAIError as exc:
            raise self._error(exc) from None
        _PROMPT_ONLY.add((self.where, self.model))
        return answer, "prompt"

    def _request(self, messages: list[dict[str, Any]], labels: Sequence[str], language: Language, mode: Mode, *,
                 stream: bool, advice: bool) -> Any:
        note = (_STRUCTURED_NOTE if mode == "json_schema" else _PROSE_NOTE)[language]
        if advice:
            note += " " + _ADVICE_NOTE[mode][language]
        messages = _with_system_note(messages, note.format(language=_LANGUAGE_NAME[language]))
        extra: dict[str, Any] = {}
        if mode == "json_schema":
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": SCHEMA_NAME, "strict": True, "schema": api_schema(labels, self.rules, advice=advice)}}
        return self.client.chat.completions.create(model=self.model, messages=messages, stream=stream, **extra)

    def _error(self, exc: openai.OpenAIError) -> PlanningError:
        timeout = self.client.timeout if isinstance(self.client.timeout, int | float) else 0
        return planning_error(exc, where=self.where, model=self.model, timeout=float(timeout),
                              retries=self.client.max_retries)


def _with_system_note(messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """``messages`` with ``note`` appended to the system message (or a system message of its own)."""
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": messages[0]["content"] + "\n" + note}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


_REPLY_KEY = re.compile(r'"reply"\s*:\s*"')
_STOP = re.compile(r"```|\[|\{")


class ReplyPreview:
    """The human part of a reply as it streams: the ``reply`` string of a structured answer, or the prose before the JSON.

    Feeding it chunks returns the new visible text; it holds back half-received escapes
    and backticks, so nothing of the JSON flashes up in the chat.
    """

    def __init__(self, *, structured: bool) -> None:
        self.structured = structured
        self.buffer = ""
        self.shown = ""
        self.done = False
        self._decided = not structured

    def feed(self, piece: str) -> str:
        if self.done or not piece:
            return ""
        self.buffer += piece
        if not self._decided:
            head = self.buffer.lstrip()
            if not head:
                return ""
            self._decided = True
            self.structured = head.startswith("{")
        visible = self._reply_so_far() if self.structured else self._prose_so_far()
        if not visible.startswith(self.shown):
            return ""
        new, self.shown = visible[len(self.shown):], visible
        return new

    def _prose_so_far(self) -> str:
        stop = _STOP.search(self.buffer)
        if stop:
            self.done = True
            return self.buffer[:stop.start()]
        return self.buffer.rstrip("`")

    def _reply_so_far(self) -> str:
        match = _REPLY_KEY.search(self.buffer)
        if match is None:
            return ""
        body = self.buffer[match.end():]
        for i, char in enumerate(body):
            if char == '"' and (len(body[:i]) - len(body[:i].rstrip("\\"))) % 2 == 0:
                self.done = True
                return _decode(body[:i])
        return _decode(body)  # a trailing half escape is dropped by _decode's backing off


def _decode(raw: str) -> str:
    """The longest decodable prefix of a JSON string body (streams cut escapes in half)."""
    for end in range(len(raw), max(len(raw) - 12, -1), -1):
        try:
            return str(json.loads('"' + raw[:end] + '"', strict=False))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return ""

