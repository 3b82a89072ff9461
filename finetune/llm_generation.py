"""LLM generation of dataset rows: a model writes requests for command programs, or paraphrases template requests.

Template rows are correct by construction but read like templates; a model writes what
people actually type. It is asked through the OpenAI-compatible planner settings
(``CHATEDIT_OPENAI_*``) with the planner's own client (:func:`core.planners.openai_planner.make_client`:
the SDK retries 408/409/429/5xx and dropped connections with exponential backoff, up to
``openai_max_retries``) and the planner's error sentences.

- ``mode="write"``: given the labels of the image and a command program, write the request
  that asks for exactly those edits, in the row's language;
- ``mode="paraphrase"``: rewrite a template request the way another person would say it.

A model is not trusted any more than a planner is: every row it writes keeps the source's
labels and commands and must pass the dataset checks (valid under the contract and its
labels, a dry run through validation and merging, and a round trip in which the rule
planner reads the new request back to the same targets and command types), and be in
the language it was asked for. A row that fails is kept aside in
:attr:`LlmGeneration.rejected` with the reason, never dropped silently.

Requests run ``concurrency`` at a time; ``should_stop`` is asked between requests, so a
Cancel returns promptly with what is done. A server that keeps failing (``FAILURE_LIMIT``
requests in a row, each after the SDK's retries, or every request of a batch) ends the
run with :class:`GenerationFailed`, whose message is one sentence naming the server and
its last error (never the key) and which carries the partial result.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import openai

from core.planners.base import PlannerUnavailable, detect_language
from core.planners.openai_planner import make_client, planning_error
from core.planners.rule_planner import RulePlanner
from core.rules import Rules, load_rules
from core.text import clean_prompt, hide_credentials
from finetune.dataset_checks import check_row, round_trip_check
from finetune.dataset_rows import DatasetRow

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)

Mode = Literal["write", "paraphrase"]
MODES: tuple[str, ...] = ("write", "paraphrase")
#: Failed requests in a row (each already retried by the SDK) after which the server counts as down.
FAILURE_LIMIT = 3
#: Sampling temperature: requests should vary between rows, not be the model's single likeliest sentence.
TEMPERATURE = 0.9
SCHEMA_NAME = "chatedit_request"
_SCHEMA = {"type": "object", "properties": {"request": {"type": "string"}}, "required": ["request"],
           "additionalProperties": False}
_LANGUAGE_NAME = {"en": "English", "zh": "Simplified Chinese (简体中文)"}
_LANGUAGE_WORD = {"en": "English", "zh": "Chinese"}
#: How often (seconds) a wait for answers looks at ``should_stop``: a Cancel never waits for a slow server.
_POLL_SECONDS = 0.05
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_QUOTES = "\"'“”‘’「」『』"

_SYSTEM = {
    "write": (
        "You write the requests people type to a photo-editing assistant. The assistant turns a request into "
        "commands; you are given the parts the image was segmented into and the commands, and you write the request "
        "that should produce exactly those commands. Write it as a person would type it, in {language}: name the "
        "parts in everyday words (\"shirt\", not \"Upper-clothes\"), keep every edit, part, colour, amount and prompt, "
        "and add nothing else. Answer with a JSON object {{\"request\": \"...\"}}."),
    "paraphrase": (
        "You rewrite the requests people type to a photo-editing assistant. You are given a request, the parts the "
        "image was segmented into and the commands the request means; rewrite the request the way another person "
        "might say it, in {language}, varying words and sentence shape. It must still mean exactly those commands: "
        "keep every edit, part, colour, amount and prompt, add nothing, and name only parts the image has. Answer "
        "with a JSON object {{\"request\": \"...\"}}."),
}


class GenerationFailed(RuntimeError):
    """The model server kept failing (or cannot be used); the message is one sentence naming the server.

    ``partial`` holds what was generated before it gave up, so a batch job can keep it.
    """

    def __init__(self, message: str, partial: LlmGeneration | None = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class LlmGeneration:
    """What a run produced: rows that passed every check, rows kept aside with the reason, and the cost."""

    rows: list[DatasetRow] = field(default_factory=list)
    #: Rows that failed a check (the model's row with its ``checks`` filled in) or whose request failed
    #: (the source row), each with a sentence saying why.
    rejected: list[tuple[DatasetRow, str]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Chat completions the server answered.
    requests: int = 0
    #: Chat completions that failed after the SDK's retries.
    failures: int = 0
    #: True when ``should_stop`` ended the run before every source was done.
    cancelled: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class _Outcome:
    index: int
    row: DatasetRow | None = None
    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


def generate_llm_rows(
    settings: Settings,
    sources: Sequence[DatasetRow],
    *,
    mode: Mode,
    seed: int,
    concurrency: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LlmGeneration:
    """One model-written row per source row, checked; raises :class:`GenerationFailed` when the server keeps failing.

    Row ``i`` gets seed ``seed + i`` (sent to the server as ``seed``, for servers that sample
    reproducibly with one), source ``"llm"`` and the model id as origin. ``on_progress(done, total)``
    is called at the start and after every source; ``should_stop()`` between requests.
    """
    if mode not in MODES:
        raise ValueError(f"The generation mode is one of {', '.join(MODES)}, not {mode!r}.")
    if concurrency < 1:
        raise ValueError(f"Concurrency must be at least 1, not {concurrency}.")
    writer = _Writer.from_settings(settings, mode)
    result = LlmGeneration()
    total = len(sources)
    if on_progress:
        on_progress(0, total)
    outcomes: list[_Outcome] = []
    consecutive = 0
    last_error = ""
    pending = iter(enumerate(sources))
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llm-generation")
    in_flight: set[Future[_Outcome]] = set()
    try:
        while True:
            stop = bool(should_stop and should_stop())
            if stop:
                result.cancelled = len(outcomes) < total
                break
            while len(in_flight) < concurrency:
                item = next(pending, None)
                if item is None:
                    break
                in_flight.add(executor.submit(writer.write, item[0], item[1], seed + item[0]))
            if not in_flight:
                break
            done, in_flight = wait(in_flight, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                outcomes.append(outcome)
                _count(result, outcome)
                if outcome.error is not None:
                    consecutive += 1
                    last_error = outcome.error
                else:
                    consecutive = 0
                if on_progress:
                    on_progress(len(outcomes), total)
            if consecutive >= FAILURE_LIMIT:
                break
    finally:
        # Requests still in flight after a Cancel or a failure are abandoned: their answers are not waited for.
        executor.shutdown(wait=False, cancel_futures=True)
    _collect(result, outcomes, sources)
    if consecutive >= FAILURE_LIMIT or (result.failures and not result.requests and not result.cancelled):
        raise GenerationFailed(f"{last_error.rstrip('.')}; LLM generation stopped after {result.failures} failed "
                               f"request{'' if result.failures == 1 else 's'}.", partial=result)
    return result


def _count(result: LlmGeneration, outcome: _Outcome) -> None:
    result.prompt_tokens += outcome.prompt_tokens
    result.completion_tokens += outcome.completion_tokens
    if outcome.error is not None:
        result.failures += 1
    else:
        result.requests += 1


def _collect(result: LlmGeneration, outcomes: list[_Outcome], sources: Sequence[DatasetRow]) -> None:
    """Rows and rejections in the order of the sources, whatever order the answers came in."""
    for outcome in sorted(outcomes, key=lambda o: o.index):
        if outcome.error is not None:
            result.rejected.append((sources[outcome.index], outcome.error))
        elif outcome.reason is not None and outcome.row is not None:
            result.rejected.append((outcome.row, outcome.reason))
        elif outcome.row is not None:
            result.rows.append(outcome.row)


class _Writer:
    """One client and one prompt shape, shared by the worker threads (the SDK client is thread-safe)."""

    def __init__(self, client: openai.OpenAI, model: str, mode: Mode, *, structured_output: str,
                 rules: Rules | None = None) -> None:
        self.client = client
        self.model = model
        self.mode = mode
        self.structured_output = structured_output
        self.rules = rules or load_rules()
        self.where = hide_credentials(str(client.base_url).rstrip("/"))
        self._planner = RulePlanner(self.rules)
        self._prompt_only = structured_output == "prompt"
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, mode: Mode) -> _Writer:
        if not settings.openai_model:
            raise GenerationFailed("LLM generation needs a model: set CHATEDIT_OPENAI_MODEL (e.g. gpt-4o-mini, or the "
                                   "name your vLLM, Ollama or llama.cpp server serves).")
        try:
            client = make_client(settings)
        except PlannerUnavailable as exc:
            raise GenerationFailed(str(exc)) from None
        return cls(client, settings.openai_model, mode, structured_output=settings.openai_structured_output)

    # -- one source row ------------------------------------------------------------------------

    def write(self, index: int, source: DatasetRow, seed: int) -> _Outcome:
        """The model's row for ``source``, checked; never raises (a worker thread's error is an outcome)."""
        try:
            response = self._create(self.messages(source), seed)
        except openai.OpenAIError as exc:
            return _Outcome(index, error=str(self._error(exc)))
        except Exception as exc:  # noqa: BLE001 - anything else a worker hits must reach the caller as a sentence
            log.exception("LLM generation request %d failed", index)
            return _Outcome(index, error=f"The request to the server at {self.where} failed: "
                                         f"{hide_credentials(str(exc))[:200].rstrip('.')}.")
        usage = getattr(response, "usage", None)
        tokens = {"prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                  "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0)}
        message = response.choices[0].message if response.choices else None
        text = (message.content or getattr(message, "refusal", None) or "") if message else ""
        request = parse_request(text)
        row = DatasetRow(request=request or text.strip()[:500], language=source.language, labels=source.labels,
                         commands=source.commands, conversation=source.conversation, source="llm",
                         origin=self.model, seed=seed, checks={}, split=None)
        if not request:
            row = row.with_checks(answer="The model's answer held no request.")
        else:
            row = self.check(row)
        reason = "; ".join(row.failed_checks.values()) or None
        return _Outcome(index, row=row, reason=reason, **tokens)

    def check(self, row: DatasetRow) -> DatasetRow:
        """``row`` with every check's outcome: the language asked for, the contract, the dry run, the round trip."""
        written = detect_language(row.request)
        if written != row.language:
            row = row.with_checks(language=f"The request is written in {_LANGUAGE_WORD[written]}, not "
                                           f"{_LANGUAGE_WORD.get(row.language, row.language)} as asked.")
        else:
            row = row.with_checks(language=True)
        row = check_row(row, self.rules)
        unread: list[str] = []

        def plan(request: str, labels: Sequence[str]) -> list[Mapping[str, Any]]:
            result = self._planner.plan(request, labels=list(labels))
            unread.extend(n.reason for n in result.not_understood)
            unread.extend(r.reason for r in result.rejections)
            return result.wire()

        row = round_trip_check(row, plan, self.rules)
        outcome = row.checks.get("round_trip")
        if outcome is not True and unread:
            # The planner's own words say why ("This image has no Hat …"), which the difference alone does not.
            row = row.with_checks(round_trip=f"{outcome} The rule planner: {' '.join(dict.fromkeys(unread))}")
        return row

    # -- the prompt ------------------------------------------------------------------------------

    def messages(self, source: DatasetRow) -> list[dict[str, str]]:
        language = source.language if source.language in _LANGUAGE_NAME else detect_language(source.request)
        system = _SYSTEM[self.mode].format(language=_LANGUAGE_NAME[language])
        lines = ["Parts of the image: " + (", ".join(source.labels) or "none (whole-image edits only)") + "."]
        lines += [f"Earlier in the conversation the person said: {clean_prompt(user)!r}"
                  for user, _ in source.conversation]
        lines.append("Commands:")
        lines += [f"- {describe_command(command, self.rules)}" for command in source.commands]
        if self.mode == "paraphrase":
            lines.append(f"Request to rewrite: {clean_prompt(source.request)}")
        lines.append(f"Write the request in {_LANGUAGE_NAME[language]}.")
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]

    # -- the server ------------------------------------------------------------------------------

    def _create(self, messages: list[dict[str, str]], seed: int) -> Any:
        """A chat completion, asking for structured output unless the server refused it (then once more without)."""
        with self._lock:
            prompt_only = self._prompt_only
        if prompt_only:
            return self._request(messages, seed, structured=False)
        try:
            return self._request(messages, seed, structured=True)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if self.structured_output == "json_schema":
                raise
            log.info("%s refused response_format for %s (%s); asking the prompt way", self.where, self.model,
                     hide_credentials(str(exc)))
        answer = self._request(messages, seed, structured=False)
        with self._lock:
            self._prompt_only = True
        return answer

    def _request(self, messages: list[dict[str, str]], seed: int, *, structured: bool) -> Any:
        extra: dict[str, Any] = {}
        if structured:
            extra["response_format"] = {"type": "json_schema",
                                        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": _SCHEMA}}
        return self.client.chat.completions.create(model=self.model, messages=messages, temperature=TEMPERATURE,
                                                   seed=seed, **extra)

    def _error(self, exc: openai.OpenAIError) -> Exception:
        timeout = self.client.timeout if isinstance(self.client.timeout, int | float) else 0
        return planning_error(exc, where=self.where, model=self.model, timeout=float(timeout),
                              retries=self.client.max_retries)


def describe_command(command: Mapping[str, Any], rules: Rules | None = None) -> str:
    """A command with its paras by name and what it does: ``recolor(targets=["Hair"], color="red"): change the colour…``."""
    rules = rules or load_rules()
    name = str(command.get("command"))
    paras = list(command.get("paras") or [])
    rule = rules.commands.get(name)
    if rule is None:
        return json.dumps(dict(command), ensure_ascii=False)
    named = ", ".join(f"{para.name}={json.dumps(value, ensure_ascii=False)}" for para, value in zip(rule.paras, paras))
    return f"{name}({named}): {rule.description}"


def parse_request(text: str) -> str:
    """The request in a model's answer: ``{"request": ...}``, a JSON string, or the plain text without quotes."""
    text = _FENCE.sub("", text.strip()).strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if isinstance(value, dict):
        value = value.get("request")
    if not isinstance(value, str):
        return ""
    value = " ".join(value.split())
    while len(value) >= 2 and value[0] in _QUOTES and value[-1] in _QUOTES:
        value = value[1:-1].strip()
    return value


__all__ = ["FAILURE_LIMIT", "MODES", "GenerationFailed", "LlmGeneration", "Mode", "describe_command",
           "generate_llm_rows", "parse_request"]
