"""The one road from a model's text to commands, and the limits on what goes to a model.

A language model's reply is untrusted input, whatever the prompt said: it can carry
commands the contract does not know, labels the image does not have, or text injected by
the request it was asked about. So every LLM planner turns its reply into commands here,
and only through :func:`core.commands.extract_commands` / :func:`core.commands.validate`
against this image's labels: nothing in a reply is evaluated, and nothing becomes a path,
SQL, a model id or code. Requests too long to be a request are refused before any API
call, in the person's language, so a pasted document costs no tokens and no surprises.
What goes to a model and what comes back as prose loses control characters and
bidirectional overrides (:func:`core.text.clean_prompt`; the request in
:func:`core.planners.messages.build_messages`), so no one reads text the model did not see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from typing import Any

from core.commands import CommandsNotFound, extract_commands, validate
from core.describe import describe
from core.planners.base import ChatTurn, Language, NotUnderstood, PlanResult
from core.rules import Rules, load_rules
from core.text import clean_prompt

#: Longest reply text shown to the person; a model that writes more is cut (with an ellipsis).
MAX_REPLY_CHARS = 2_000
#: Longest earlier turn sent back to the model; longer ones are cut, so one pasted turn cannot fill the context.
MAX_TURN_CHARS = 4_000
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.DOTALL)


def say(language: Language, en: str, zh: str) -> str:
    return zh if language == "zh" else en


def max_request_chars(rules: Rules | None = None) -> int:
    """The longest request any planner accepts: four prompts' worth (2,000 characters), as the rule planner."""
    return 4 * (rules or load_rules()).text_max_length


def refuse_overlong(request: str, language: Language, rules: Rules | None = None) -> PlanResult | None:
    """A polite refusal when ``request`` is longer than a request can be; None when it is fine."""
    limit = max_request_chars(rules)
    if len(request) <= limit:
        return None
    reason = say(language, f"The request is {len(request)} characters long; please keep it under {limit}.",
                 f"请求有 {len(request)} 个字符，请控制在 {limit} 个以内。")
    return PlanResult(reply=reason, not_understood=[NotUnderstood(request[:80], reason)], language=language)


def clip_conversation(conversation: Sequence[ChatTurn]) -> list[ChatTurn]:
    """The conversation with each turn cut to :data:`MAX_TURN_CHARS` (older turns are dropped by the prompt builder)."""
    return [turn if len(turn.content) <= MAX_TURN_CHARS else ChatTurn(turn.role, turn.content[:MAX_TURN_CHARS] + "…")
            for turn in conversation]


def _clip_reply(text: str) -> str:
    """The reply as shown and stored: cut to length, and without control or bidirectional-override characters."""
    text = clean_prompt(text).strip()
    return text if len(text) <= MAX_REPLY_CHARS else text[:MAX_REPLY_CHARS].rstrip() + "…"


def prose_of(text: str) -> str:
    """``text`` without its JSON: ``` fences and the command array removed, what is left is the model's prose."""
    without_fences = _FENCE.sub("", text)
    start = without_fences.find("[")
    while start != -1:
        try:
            value, end = json.JSONDecoder().raw_decode(without_fences, start)
        except json.JSONDecodeError:
            start = without_fences.find("[", start + 1)
            continue
        if isinstance(value, list):
            without_fences = without_fences[:start] + without_fences[end:]
            break
        start = without_fences.find("[", start + 1)
    return re.sub(r"\n{3,}", "\n\n", without_fences).strip()


def _structured(text: str) -> tuple[str, list[Any]] | None:
    """(reply, items) of a structured-output object ``{"reply": ..., "commands": [...], "advice": [...]}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("commands"), list):
        return None
    advice = value.get("advice")
    items: list[Any] = []
    if isinstance(advice, list):
        items += [{"command": "advice", "paras": [a]} for a in advice]
    items += value["commands"]
    reply = value.get("reply")
    return (reply if isinstance(reply, str) else ""), items


def summary(result: PlanResult) -> str:
    """A readable reply when the model wrote only JSON: what will be done, and what was refused and why."""
    language = result.language
    lines = []
    if result.commands:
        lines.append(say(language, "Here is what I suggest:", "我的建议："))
        lines += [f"- {describe(command.to_wire(), language)}" for command in result.commands]
    elif not result.not_understood and not result.rejections:
        lines.append(say(language, "I found nothing to change.", "我没有找到要修改的内容。"))
    lines += [item.reason for item in result.not_understood]
    lines += [rejection.reason for rejection in result.rejections]
    return "\n".join(lines)


def result_from_reply(text: str, labels: Collection[str], *, request: str, language: Language,
                      rules: Rules | None = None) -> PlanResult:
    """A model's reply turned into a :class:`PlanResult`, parsed against the closed contract and this image's labels.

    The reply may be a structured-output object (``{"reply", "commands"}``) or prose with a
    command array in it; either way only items that pass :func:`core.commands.validate`
    become commands, the others are rejections with their reason, and a reply with no
    command list at all is reported as not understood (it counts as invalid), never guessed.
    """
    rules = rules or load_rules()
    structured = _structured(text)
    if structured is not None:
        prose, items = structured
    else:
        try:
            items = extract_commands(text)
        except CommandsNotFound:
            reason = say(language, "The model's answer held no list of commands.", "模型的回答里没有命令列表。")
            prose = _clip_reply(prose_of(text))
            return PlanResult(reply=prose or reason, not_understood=[NotUnderstood(request[:80], reason)],
                              language=language)
        prose = prose_of(text)
    outcome = validate(items, labels, rules)
    result = PlanResult(reply="", commands=outcome.commands, rejections=outcome.rejections, language=language)
    prose = _clip_reply(prose)
    if prose and result.rejections:
        prose += "\n" + "\n".join(r.reason for r in result.rejections)
    result.reply = prose or summary(result)
    return result
