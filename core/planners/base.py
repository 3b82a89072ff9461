"""The planner interface: a request, the conversation and the image's labels in; reply and commands out.

Every backend (the offline rule parser, an OpenAI-compatible API, a local model) returns
the same :class:`PlanResult`, and every command in it has passed the validator against
this image's labels: a planner can suggest, only the contract decides.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from core.commands import Command, Rejection
from core.describe import describe

Language = Literal["en", "zh"]
Role = Literal["user", "assistant"]

_CJK = re.compile(r"[\u3400-\u9fff]")


class PlannerUnavailable(RuntimeError):
    """A planner that cannot run here; the message names the setting that enables it."""


@dataclass(frozen=True)
class ChatTurn:
    role: Role
    content: str


@dataclass(frozen=True)
class NotUnderstood:
    """A clause of the request the planner did not turn into a command, and why (one sentence)."""

    clause: str
    reason: str


@dataclass
class PlanResult:
    """What a planner made of a request: its reply, the valid commands, and what it left out."""

    reply: str
    commands: list[Command] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    not_understood: list[NotUnderstood] = field(default_factory=list)
    language: Language = "en"

    def wire(self) -> list[dict[str, Any]]:
        return [c.to_wire() for c in self.commands]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (a `plan` job's result, a chat message's record)."""
        return {
            "reply": self.reply,
            "commands": self.wire(),
            "rejections": [{"index": r.index, "item": r.item, "reason": r.reason} for r in self.rejections],
            "not_understood": [{"clause": n.clause, "reason": n.reason} for n in self.not_understood],
            "language": self.language,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanResult:
        return cls(
            reply=str(data.get("reply", "")),
            commands=[Command(c["command"], tuple(tuple(p) if isinstance(p, list) else p for p in c["paras"]))
                      for c in data.get("commands", [])],
            rejections=[Rejection(r["index"], r["item"], r["reason"]) for r in data.get("rejections", [])],
            not_understood=[NotUnderstood(n["clause"], n["reason"]) for n in data.get("not_understood", [])],
            language="zh" if data.get("language") == "zh" else "en",
        )


class Planner(Protocol):
    name: str

    def plan(self, request: str, *, labels: Sequence[str], conversation: Sequence[ChatTurn] = ()) -> PlanResult:
        """Commands for ``request`` on an image with these ``labels`` (``Selection`` when the person drew one)."""
        ...


def detect_language(text: str) -> Language:
    """Chinese when the request has Chinese characters: replies follow the person's language."""
    return "zh" if _CJK.search(text) else "en"


#: Scripts of languages the planners do not read (kana, hangul, Cyrillic, Greek, Hebrew, Arabic, Devanagari, Thai).
_OTHER_SCRIPT = re.compile(r"[\u3040-\u30ff\uac00-\ud7af\u1100-\u11ff\u0400-\u04ff\u0370-\u03ff"
                           r"\u0590-\u05ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f]")
#: Letters English does not use, common in other languages written in the Latin alphabet.
_FOREIGN_LETTERS = re.compile(r"[àâçéèêëîïôûùüÿñœæäöß¿¡ãõìòóúíá]", re.IGNORECASE)
#: Words of French, Spanish, German, Italian and Portuguese requests that are not English words.
_FOREIGN_WORDS = frozenset(
    "le la les des du une et avec rends mets fais rendre chemise rouge fond cheveux "
    "el los las una haz pon camisa rojo fondo pelo "
    "der die das und mit mach bitte hemd rot hintergrund haare "
    "il della rendi metti camicia rosso sfondo capelli "
    "os faça camiseta vermelho".split())
UNSUPPORTED_LANGUAGE = ("I understand requests in English and Chinese only; please write it in one of them. "
                        "我能理解英文和中文的请求，请用其中一种语言再说一次。")


def unsupported_language(text: str) -> bool:
    """True when ``text`` is written in a language the planners do not read (neither English nor Chinese).

    Mixed English and Chinese is supported; Japanese is told apart from Chinese by its kana.
    """
    if _OTHER_SCRIPT.search(text) or _FOREIGN_LETTERS.search(text):
        return True
    words = re.findall(r"[a-z]+", text.lower())
    foreign = sum(word in _FOREIGN_WORDS for word in words)
    return foreign >= 2 and foreign * 2 >= len(words)


def say(language: Language, en: str, zh: str) -> str:
    """The sentence in the person's language."""
    return zh if language == "zh" else en


def summary_reply(result: PlanResult, *, quote_clauses: bool = True) -> str:
    """A planner's reply that lists its commands as people read them, then what it left out and why."""
    language = result.language
    lines = []
    if result.commands:
        lines.append(say(language, "Here is what I will do:", "我会这样修改："))
        lines.extend(f"- {describe(c.to_wire(), language)}" for c in result.commands)
    elif not result.not_understood and not result.rejections:
        lines.append(say(language, "I found nothing to change.", "我没有找到要修改的内容。"))
    for item in result.not_understood:
        quoted = quote_clauses and item.clause not in item.reason
        lines.append(f"\"{item.clause}\": {item.reason}" if quoted else item.reason)
    lines.extend(rejection.reason for rejection in result.rejections)
    return "\n".join(lines)
