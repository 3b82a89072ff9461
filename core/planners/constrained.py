"""Grammar-constrained decoding of the command array: a Lark grammar from the JSON Schema, enforced by llguidance.

Why a grammar generated here, not the schema handed to the library: ``json_schema(labels)``
stays the single source of truth, and every part of the grammar is read from it, but no
library enforces all of it, and the validator is stricter than the schema in two places.
What each library does with the real schema (docs/benchmarks.md has the runs):

- ``uniqueItems`` (targets): llguidance refuses the keyword, xgrammar and outlines-core
  ignore it (``["Hair","Hair"]`` passes). Here targets are a *subset of the labels in the
  schema's enum order*, unique by construction.
- blank text (``" "``) and unknown colours (``"qqq"``) pass every library's JSON mode and
  fail ``core.commands.validate``. Here text starts with a visible character and colours
  are exactly the words ``core.colors.parse_color`` accepts.
- numeric bounds: outlines-core ignores them (amount 2, strength 0 pass); here each bound
  becomes a decimal regex (at most 3 decimals, so a number ends).

The grammar also bounds the answer: 1 to ``max_commands`` commands (an empty answer is an
``advice`` command, as the system prompt says), texts up to ``max_text_chars``; its longest
sentence is known (``max_bytes``), so a token budget at least that long is never cut short.

Library choice (docs/benchmarks.md, "Planner"): the grammar is per image, so it is compiled
while a person waits, and llguidance compiles it orders of magnitude sooner than xgrammar
or outlines-core; its mask per token costs far less than a forward pass; and it is a small
wheel with no dependencies (xgrammar pulls triton and tvm-ffi). So: llguidance.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from core.colors import color_words
from core.prompting import json_schema
from core.rules import Rules, load_rules

if TYPE_CHECKING:
    import numpy as np
    import torch

#: How to get the grammar engine (a base dependency of chatedit) when it is missing.
INSTALL_HINT = "pip install 'llguidance>=1.9' (a dependency of chatedit)"
#: Characters a text may not start with: JSON-forbidden, quote, backslash, and what str.strip() removes.
_BLANK = r"\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_TEXT_CHAR = r'([^"\\\x00-\x1f\x7f]|\\["\\\/nt])'
_DECIMALS = 3


class GrammarUnsupported(ValueError):
    """The JSON Schema uses something the grammar generator does not translate (it never drops a rule silently)."""


@dataclass(frozen=True)
class CommandGrammar:
    """A Lark grammar (llguidance dialect) of the command array and two lengths in bytes (a token has at least one).

    ``max_bytes``: the longest sentence; a budget of more tokens is never cut short.
    ``reserve``: enough to finish from any point by closing what is open and ending the
    array; the masker starts closing a row when the budget left reaches it.
    """

    lark: str
    max_bytes: int
    reserve: int


def _lit(value: str) -> str:
    """A Lark string literal matching the JSON text of ``value``."""
    return json.dumps(json.dumps(value, ensure_ascii=False), ensure_ascii=False)


def _json_len(value: str) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def _number_regex(schema: dict[str, Any]) -> tuple[str, int]:
    """Decimals within integer bounds (``minimum``/``exclusiveMinimum``, ``maximum``/``exclusiveMaximum``)."""
    lo_excl = "exclusiveMinimum" in schema
    hi_excl = "exclusiveMaximum" in schema
    lo = schema.get("exclusiveMinimum", schema.get("minimum"))
    hi = schema.get("exclusiveMaximum", schema.get("maximum"))
    if lo is None or hi is None or not float(lo).is_integer() or not float(hi).is_integer() or hi < 0 or lo >= hi \
            or hi - lo > 1000:
        raise GrammarUnsupported(f"Numbers are translated for integer bounds with 0 <= maximum; got {schema}.")
    lo, hi = int(lo), int(hi)
    frac, nonzero = rf"(\.[0-9]{{1,{_DECIMALS}}})?", rf"\.[0-9]{{0,{_DECIMALS - 1}}}[1-9]"
    zeros = rf"(\.0{{1,{_DECIMALS}}})?"
    parts = []
    for m in range(max(lo, 0), hi):  # [m, m + 1)
        parts.append(f"{m}{nonzero}" if (m == lo and lo_excl) else f"{m}{frac}")
    if not hi_excl:
        parts.append(f"{hi}{zeros}")
    for m in range(0, -lo):  # (-(m + 1), -m]
        parts.append(f"-0{nonzero}" if m == 0 else f"-{m}{frac}")
    if lo < 0 and not lo_excl:
        parts.append(f"-{-lo}{zeros}")
    longest = len(str(max(abs(lo), hi))) + 2 + _DECIMALS
    return "/(" + "|".join(parts) + ")/", longest


def _text_regex(schema: dict[str, Any], max_chars: int) -> tuple[str, int]:
    """A JSON string with a visible first character, at most ``maxLength`` (and ``max_chars``) characters."""
    if schema.get("minLength", 0) > 1:
        raise GrammarUnsupported(f"Strings are translated with minLength 0 or 1; got {schema}.")
    chars = min(int(schema.get("maxLength", max_chars)), max_chars)
    if chars < 1:
        raise GrammarUnsupported("A text of at most 0 characters cannot be a non-empty text.")
    return f'/"[^"\\\\{_BLANK}]{_TEXT_CHAR}{{0,{chars - 1}}}"/', 2 + 4 * chars



class _Builder:
    """Turns the schema's pieces into Lark rules, sharing rules between equal pieces."""

    def __init__(self, max_text_chars: int) -> None:
        self.rules: dict[str, str] = {}
        self.lengths: dict[str, int] = {}
        self.shortest: dict[str, int] = {}
        self.max_text_chars = max_text_chars
        self._seen: dict[str, str | None] = {}

    def rule(self, name: str, body: str, max_bytes: int, min_bytes: int) -> str:
        self.rules.setdefault(name, body)
        self.lengths.setdefault(name, max_bytes)
        self.shortest.setdefault(name, min_bytes)
        return name

    def targets(self, schema: dict[str, Any]) -> str | None:
        """A subset of the enum in its order: unique by construction. None when no subset is allowed."""
        labels = list(schema["items"]["enum"])
        required = schema.get("minItems", 0) >= 1
        if required and not labels:
            return None
        prefix = f"labels{len(self.rules)}"
        for i in reversed(range(len(labels))):
            rest = [f"{prefix}_{j}" for j in range(i + 1, len(labels))]
            body = _lit(labels[i]) + (f' ("," ({" | ".join(rest)}))?' if rest else "")
            longest = _json_len(labels[i]) + sum(1 + _json_len(label) for label in labels[i + 1:])
            self.rule(f"{prefix}_{i}", body, longest, _json_len(labels[i]))
        inner = " | ".join(f"{prefix}_{i}" for i in range(len(labels)))
        body = '"[" ' + (f"({inner})" if required else f"({inner})?" if labels else "") + ' "]"'
        shortest = 2 + (min(map(_json_len, labels)) if required else 0)
        return self.rule(f"{prefix}_list", body, 2 + (self.lengths[f"{prefix}_0"] if labels else 0), shortest)

    def para(self, schema: dict[str, Any], para_type: str) -> str | None:
        key = json.dumps([schema, para_type], sort_keys=True)
        if key not in self._seen:
            self._seen[key] = self._para(schema, para_type)
        return self._seen[key]

    def _para(self, schema: dict[str, Any], para_type: str) -> str | None:
        known = {"type", "items", "uniqueItems", "minItems", "enum", "minimum", "maximum", "exclusiveMinimum",
                 "exclusiveMaximum", "minLength", "maxLength"}
        if set(schema) - known:
            raise GrammarUnsupported(f"The grammar does not translate {sorted(set(schema) - known)} in {schema}.")
        if schema.get("type") == "array":
            return self.targets(schema)
        if "enum" in schema:
            values = [str(v) for v in schema["enum"]]
            return self.rule(f"enum{len(self.rules)}", " | ".join(_lit(v) for v in values),
                             max(map(_json_len, values)), min(map(_json_len, values)))
        if schema.get("type") == "number":
            regex, longest = _number_regex(schema)
            return self.rule(f"number{len(self.rules)}", regex, longest, 1)
        if schema.get("type") == "string" and para_type == "color":
            words = color_words()
            body = " | ".join(_lit(w) for w in words) + ' | /"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})"/'
            return self.rule("color", body, max(map(_json_len, words)), min(map(_json_len, words)))
        if schema.get("type") == "string":
            regex, longest = _text_regex(schema, self.max_text_chars)
            return self.rule(f"text{longest}", regex, longest, 3)
        raise GrammarUnsupported(f"The grammar does not translate the para schema {schema}.")


def command_grammar(labels: Collection[str], rules: Rules | None = None, *, max_commands: int = 8,
                    max_text_chars: int | None = None) -> CommandGrammar:
    """The grammar of 1..``max_commands`` commands for an image with these labels, read from ``json_schema``."""
    rules = rules or load_rules()
    if max_commands < 1:
        raise ValueError("max_commands must be at least 1.")
    schema = json_schema(labels, rules)
    builder = _Builder(max_text_chars or rules.text_max_length)
    items, longest, shortest = [], 0, 0
    for command in schema["items"]["anyOf"]:
        name = command["properties"]["command"]["const"]
        paras_schema = command["properties"]["paras"]
        pieces = [builder.para(p, para.type) for p, para in zip(paras_schema["prefixItems"],
                                                                rules.commands[name].paras, strict=True)]
        if None in pieces:
            continue  # unsatisfiable here (targets but no labels), as in the schema
        head = f'{{"command":{json.dumps(name)},"paras":['
        body = " \",\" ".join(p for p in pieces if p)
        fixed = len(head) + 2 + len(pieces) - 1
        items.append(builder.rule(f"cmd_{name}", f"{json.dumps(head)} {body} \"]}}\"",
                                  fixed + sum(builder.lengths[p] for p in pieces if p),
                                  fixed + sum(builder.shortest[p] for p in pieces if p)))
        longest = max(longest, builder.lengths[items[-1]])
        shortest = max(shortest, builder.shortest[items[-1]])
    lines = [f'start: "[" command ("," command){{0,{max_commands - 1}}} "]"', "command: " + " | ".join(items)]
    lines += [f"{name}: {body}" for name, body in builder.rules.items()]
    # From inside a command: its shortest whole form, an unfinished label or number, "]", the end token.
    reserve = shortest + max((len(label.encode()) for label in labels), default=0) + 8 + 2
    return CommandGrammar("\n".join(lines) + "\n", 2 + max_commands * (longest + 1) - 1, reserve)


def complete_prefix(text: str) -> tuple[str, bool]:
    """A grammar prefix cut to its finished commands: ``(array text, whether it was cut)``.

    Generation that runs out of tokens leaves a prefix of a valid array; the commands
    that were finished are still valid, so the array is closed after the last of them.
    """
    decoder = json.JSONDecoder()
    stripped = text.strip()
    try:
        if isinstance(json.loads(stripped), list):
            return stripped, False
    except json.JSONDecodeError:
        pass
    items: list[Any] = []
    position = stripped.find("[") + 1
    while 0 < position < len(stripped):
        try:
            item, end = decoder.raw_decode(stripped, position)
        except json.JSONDecodeError:
            break
        items.append(item)
        position = end + 1 if stripped[end:end + 1] == "," else -1
    return json.dumps(items, ensure_ascii=False, separators=(",", ":")), True


@lru_cache(maxsize=4)
def _ll_tokenizer(tokenizer: Any, n_vocab: int, eos: int) -> Any:
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer, n_vocab=n_vocab, eos_token=eos)


class GrammarConstraint:
    """The tokenizer's view for llguidance, built once per model (it walks the whole vocabulary).

    It also keeps what every request reuses instead of rebuilding it: the compiled grammar
    and one fresh matcher per label set (copying a matcher is far cheaper than making one),
    and the closing tokens as packed words.
    """

    def __init__(self, tokenizer: Any, n_vocab: int, eos_token_id: int) -> None:
        import llguidance

        self._llg = llguidance
        self.n_vocab = n_vocab
        self.words = math.ceil(n_vocab / 32)
        self.eos_token_id = eos_token_id
        self.tokenizer = _ll_tokenizer(tokenizer, n_vocab, eos_token_id)
        #: llguidance's own default pool size: 80% of the cores, 1 to 32 threads.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.threads = min(32, max(1, cores * 80 // 100))
        self.executor = llguidance.LLExecutor(self.threads)
        #: Tokens that close what is open (a string, a list, the array) or end the answer, one bit each.
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        closing = [i for i, t in enumerate(texts) if t[:1] in ('"', "]", "}")] + [eos_token_id]
        self.closing_words = _pack_bits(closing, self.words)

    @lru_cache(maxsize=64)  # noqa: B019 - one constraint per loaded model, a handful of label sets per session
    def compiled(self, lark: str) -> str:
        grammar = self._llg.LLMatcher.grammar_from_lark(lark)
        problem = self._llg.LLMatcher.validate_grammar(grammar, self.tokenizer)
        if problem:
            raise GrammarUnsupported(f"llguidance refused the command grammar: {problem}")
        return grammar

    @lru_cache(maxsize=64)  # noqa: B019 - as above; it is only ever copied, never advanced
    def _fresh_matcher(self, lark: str) -> Any:
        return self._llg.LLMatcher(self.tokenizer, self.compiled(lark))

    def matcher(self, grammar: CommandGrammar) -> Any:
        """An ``LLMatcher`` at the start of this grammar, for one row."""
        return self._fresh_matcher(grammar.lark).deep_copy()

    def masker(self, grammar: CommandGrammar, batch_size: int, budget: int) -> CommandMasker:
        """A fresh masker for one batch of at most ``budget`` new tokens per row."""
        return CommandMasker([self.matcher(grammar) for _ in range(batch_size)], self, budget=budget,
                             reserve=grammar.reserve)


def _pack_bits(tokens: Sequence[int], words: int) -> np.ndarray:
    """A bitmask in llguidance's layout (bit ``t % 32`` of int32 word ``t // 32``) with these tokens set."""
    import numpy as np

    bits = np.zeros(words * 32, dtype=np.uint8)
    bits[list(tokens)] = 1
    return np.packbits(bits, bitorder="little").view("<i4").astype(np.int32)


@lru_cache(maxsize=1)
def _blocked_by_byte() -> np.ndarray:
    """Row ``b``: the 8 tokens of a bitmask byte ``b``, True where the bit is clear (the token is not allowed)."""
    import numpy as np

    return np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little") == 0


class CommandMasker:
    """Keeps each row of a batch on its grammar: masks the scores before a token is chosen, then advances.

    Used by ``core.planners.decoding.decode`` once per step: :meth:`mask` forbids, in place,
    every token the row's grammar does not allow next; :meth:`advance` consumes the token
    each row got and returns the tokens the grammar *forces* after it (``{"command":"``
    after ``[``, the rest of a label after its first letters...), which the decoder appends
    without asking the model: on this grammar a large share of an answer's tokens are
    forced, and each one skipped is a forward pass saved. A row whose grammar can only end
    gets its end token the same way.

    Each row's packed int32 bitmask (llguidance's layout) is filled in place at a
    precomputed address and expanded to one bool per token through a 256-row table (one
    ``take``); nothing is allocated per step. The rows go to llguidance's thread pool only
    when it has more than one thread: with one, the pool is a handoff to another thread and
    nothing in parallel, and the handoffs cost more than the mask.

    When a row's budget left reaches the grammar's reserve, the row, if it may close
    something, must: its answer ends with the commands it has, instead of being cut.
    """

    def __init__(self, matchers: Sequence[Any], constraint: GrammarConstraint, *, budget: int, reserve: int) -> None:
        import numpy as np
        import torch

        rows = len(matchers)
        self.matchers = list(matchers)
        self.constraint = constraint
        self.budget = budget
        self.reserve = reserve
        #: Tokens each row has so far, its end token included.
        self.written = [0] * rows
        self.done = [False] * rows
        self._words = np.full((rows, constraint.words), -1, dtype=np.int32)
        self._bytes = self._words.view(np.uint8)
        self._closing = self._words.copy()
        self._blocked = np.zeros((rows, constraint.words * 4, 8), dtype=bool)
        self._blocked_tensor = torch.from_numpy(self._blocked.reshape(rows, -1))
        self._row_bytes = constraint.words * 4
        self._live = [(matcher, row, self._words.ctypes.data + row * self._row_bytes)
                      for row, matcher in enumerate(self.matchers)]
        self._parallel = constraint.threads > 1 and rows > 1

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` (rows x vocabulary), with -inf wherever a live row's grammar forbids the token; in place."""
        import numpy as np

        live = self._live
        if self._parallel and len(live) > 1:
            self.constraint.executor.unsafe_compute_mask_ptr([(m, row) for m, row, _ in live], self._words.ctypes.data,
                                                             self._row_bytes, len(self.done))
        else:
            for matcher, _, address in live:
                matcher.unsafe_compute_mask_ptr(address, self._row_bytes)
        short = [row for _, row, _ in live if self.budget - self.written[row] <= self.reserve]
        if short:
            closing = np.bitwise_and(self._words[short], self.constraint.closing_words, out=self._closing[:len(short)])
            may_close = closing.any(axis=1)
            self._words[np.asarray(short)[may_close]] = closing[may_close]
        np.take(_blocked_by_byte(), self._bytes, axis=0, out=self._blocked)
        blocked = self._blocked_tensor[:, :scores.shape[-1]]
        return scores.masked_fill_(blocked.to(scores.device), -math.inf)

    def advance(self, tokens: Sequence[int]) -> list[list[int]]:
        """Per row, the tokens to append after ``tokens[row]``: forced ones, or the end token where only it may follow.

        Rows that ended (their end token, a refused token, the budget) are marked in ``done``.
        """
        constraint, eos = self.constraint, self.constraint.eos_token_id
        live = self._live
        if self._parallel and len(live) > 1:
            accepted = constraint.executor.consume_token_par([(m, tokens[row]) for m, row, _ in live])
        else:
            accepted = [m.consume_token(tokens[row]) for m, row, _ in live]
        after: list[list[int]] = [[] for _ in self.done]
        for (matcher, row, _), ok in zip(live, accepted, strict=True):
            self.written[row] += 1
            if not ok or tokens[row] == eos:
                self._end(row)
                continue
            room = self.budget - self.written[row]
            if matcher.is_stopped():  # the array is closed: only the end token may follow
                forced = [eos][:room]
                self._end(row)
            else:
                forced = matcher.compute_ff_tokens()[:room]
                if forced and not matcher.consume_tokens(forced):
                    raise RuntimeError(f"llguidance refused the tokens it forced itself: {forced}")
            self.written[row] += len(forced)
            if self.written[row] >= self.budget:
                self._end(row)
            after[row] = forced
        self._live = [entry for entry in live if not self.done[entry[1]]]
        return after

    def _end(self, row: int) -> None:
        self.done[row] = True
        self._words[row] = -1  # a finished row is padded by the decoder; every token stays allowed
