"""The chat messages every LLM planner sends: system prompt, the labels as a synthetic turn, the conversation, the request.

The thesis gave its models the image's labels as a first exchange ("which parts does the
new image have?" → a numbered list), which is also how its dataset (and so a model
fine-tuned on it) sees them; we keep that turn, in the person's language, after the
system prompt generated from the rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.planners.base import ChatTurn, Language, detect_language
from core.prompting import system_prompt
from core.rules import Rules, load_rules
from core.text import clean_prompt

LABELS_QUESTION = {"zh": "我更改了图片，新的图片有哪些部分？", "en": "I changed the image; which parts does the new image have?"}
LABELS_ANSWER = {"zh": "分割得到的标签有:", "en": "The segmentation found these labels:"}
NO_LABELS = {"zh": "没有分割标签；可以用整张图片的命令，或先选中区域。",
             "en": "There are no segmentation labels; use whole-image commands, or select a region first."}
#: How many earlier turns go into the prompt (the newest ones): enough for "and now the hair too".
MAX_TURNS = 12


def labels_turn(labels: Sequence[str], language: Language) -> list[dict[str, str]]:
    """The thesis' synthetic exchange that tells the model which parts this image has."""
    if labels:
        answer = LABELS_ANSWER[language] + "\n" + "\n".join(f"{i}. {label}" for i, label in enumerate(labels, 1))
    else:
        answer = NO_LABELS[language]
    return [{"role": "user", "content": LABELS_QUESTION[language]}, {"role": "assistant", "content": answer}]


def build_messages(
    request: str,
    labels: Sequence[str],
    conversation: Sequence[ChatTurn] = (),
    *,
    language: Language | None = None,
    rules: Rules | None = None,
    include_system: bool = True,
) -> list[dict[str, str]]:
    """OpenAI-style messages: system prompt, the labels turn, the last turns of the conversation, the request.

    What a person wrote reaches the model without control characters or bidirectional
    overrides (:func:`core.text.clean_prompt`): text a reviewer cannot see is not sent.
    """
    rules = rules or load_rules()
    language = language or detect_language(request)
    messages: list[dict[str, str]] = []
    if include_system:
        messages.append({"role": "system", "content": system_prompt(labels, language, rules)})
    messages += labels_turn(labels, language)
    for turn in list(conversation)[-MAX_TURNS:]:
        if turn.role in ("user", "assistant") and turn.content.strip():
            messages.append({"role": turn.role, "content": clean_prompt(turn.content)})
    messages.append({"role": "user", "content": clean_prompt(request)})
    return messages
