"""The local planner: a transformers chat model (+ optional LoRA adapter) writing commands under a grammar.

It runs in a worker (``IN_WORKER``), which keeps one instance and so one loaded model.
The model sees the same messages as every LLM planner (``core.planners.messages``)
through its own chat template; its answer is decoded under the command grammar
(``core.planners.constrained``), so it is a valid command array by construction, and is
still put through the validator, because only the contract decides. The reply for the
person describes the commands (``core.describe``); the model writes only the array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.commands import CommandsNotFound, extract_commands, validate
from core.errors import first_line
from core.planners.base import (
    ChatTurn,
    Language,
    NotUnderstood,
    PlannerUnavailable,
    PlanResult,
    detect_language,
    say,
    summary_reply,
)
from core.planners.constrained import (
    INSTALL_HINT,
    CommandGrammar,
    GrammarConstraint,
    command_grammar,
    complete_prefix,
)
from core.planners.gguf import is_gguf, load_gguf
from core.planners.messages import build_messages
from core.rules import Rules, load_rules

if TYPE_CHECKING:
    from core.settings import Settings

#: Enough for a handful of commands with prompts of a sentence each.
DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_MAX_COMMANDS = 8


@dataclass(frozen=True)
class Generation:
    """One raw answer: the text, its tokens (end token not counted), whether the budget ran out first, and the
    forward passes its batch took (fewer than its tokens when the grammar forced some)."""

    text: str
    tokens: int
    truncated: bool
    forwards: int


def load_chat_model(model_id: str) -> tuple[Any, Any, str]:
    """(tokenizer, model, device) of a local planner model: fp32 on CPU, bf16 (else fp16) on CUDA.

    One loader for planning and fine-tuning (``finetune.training``), so both see the same weights and
    tokenizer; ``model_id`` is a Hugging Face id, a model directory, or a ``.gguf`` file.
    """
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ModuleNotFoundError as exc:
        raise PlannerUnavailable(f"The local planner needs {exc.name}; install it with pip install {exc.name}.") from None
    if torch.cuda.is_available():
        device, dtype = "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        device, dtype = "cpu", torch.float32
    if is_gguf(model_id):
        tokenizer, model = load_gguf(Path(model_id), dtype)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_id)
            model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise PlannerUnavailable(f"The local planner could not load CHATEDIT_LOCAL_LLM={model_id!r}: "
                                     f"{first_line(exc)}") from None
    return tokenizer, model, device


class LocalPlanner:
    """A local chat model that plans; built once per worker by :meth:`from_settings`."""

    name = "local"

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str = "", adapter: str | None = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, max_commands: int = DEFAULT_MAX_COMMANDS,
                 max_text_chars: int | None = None, rules: Rules | None = None) -> None:
        if tokenizer.chat_template is None:
            raise PlannerUnavailable(f"The local model {model_id or 'given'} has no chat template, so it cannot chat.")
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.adapter = adapter
        self.max_new_tokens = max_new_tokens
        self.max_commands = max_commands
        self.rules = rules or load_rules()
        self.max_text_chars = max_text_chars or self.rules.text_max_length
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # batched generation continues every row from its end
        self.eos_token_id = int(tokenizer.eos_token_id)
        self._constraint: GrammarConstraint | None = None
        self._grammars: dict[tuple[tuple[str, ...], int, int], CommandGrammar] = {}

    # 1. loading ---------------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings) -> LocalPlanner:
        """The model CHATEDIT_LOCAL_LLM names, else the one ``chatedit models install-planner`` put in the data dir."""
        from core.planner_install import LOCAL_PLANNER_MISSING, local_planner_model

        model_id = local_planner_model(settings)
        if model_id is None:
            raise PlannerUnavailable(LOCAL_PLANNER_MISSING)
        return cls.load(model_id, settings.local_llm_adapter)

    @classmethod
    def load(cls, model_id: str, adapter: str | None = None, **options: Any) -> LocalPlanner:
        """Model and tokenizer from ``model_id`` (fp32 on CPU, bf16/fp16 on CUDA), with the LoRA adapter merged in.

        ``model_id`` is a Hugging Face id, a model directory, or a ``.gguf`` file (``core.planners.gguf``).
        """
        try:
            import llguidance  # noqa: F401 - fail here, with the extra to install, not at the first request
        except ModuleNotFoundError:
            raise PlannerUnavailable(f"The local planner needs llguidance; install it with {INSTALL_HINT}.") from None
        tokenizer, model, device = load_chat_model(model_id)
        if adapter:
            try:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
            except (OSError, ValueError) as exc:
                raise PlannerUnavailable(f"The local planner could not load CHATEDIT_LOCAL_LLM_ADAPTER={adapter!r}: "
                                         f"{first_line(exc)}") from None
        model.to(device).eval()
        return cls(model, tokenizer, model_id=model_id, adapter=adapter, **options)

    @property
    def _n_vocab(self) -> int:
        """The model's head rows or the tokenizer's tokens, whichever is more: every id it can write is below."""
        return max(int(self.model.config.get_text_config().vocab_size), len(self.tokenizer))

    @property
    def constraint(self) -> GrammarConstraint:
        if self._constraint is None:
            self._constraint = GrammarConstraint(self.tokenizer, self._n_vocab, self.eos_token_id)
        return self._constraint

    def grammar(self, labels: Sequence[str]) -> CommandGrammar:
        """The grammar for these labels, kept: building it costs about a decoding step of a small model, every call."""
        key = (tuple(labels), self.max_commands, self.max_text_chars)
        if key not in self._grammars:
            if len(self._grammars) >= 64:  # a handful of label sets per session; never grow without bound
                self._grammars.clear()
            self._grammars[key] = command_grammar(labels, self.rules, max_commands=self.max_commands,
                                                  max_text_chars=self.max_text_chars)
        return self._grammars[key]

    # 2. generation ------------------------------------------------------------------------------
    def prompt(self, request: str, labels: Sequence[str], conversation: Sequence[ChatTurn] = (),
               language: Language | None = None) -> str:
        messages = build_messages(request, labels, conversation, language=language, rules=self.rules)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: Sequence[str], labels: Sequence[str], *, constrained: bool = True,
                 max_new_tokens: int | None = None, stop_at_eos: bool = True,
                 do_sample: bool = False) -> list[Generation]:
        """Answers to chat-formatted ``prompts`` in one batch, under the grammar unless ``constrained`` is off.

        Planning is greedy (the same request gets the same commands); tests and the
        benchmark sample, to walk many paths through the grammar. ``stop_at_eos=False``
        (unconstrained only) runs exactly ``max_new_tokens`` tokens: the benchmark's baseline.
        """
        from core.planners.decoding import decode

        if constrained and not stop_at_eos:
            raise ValueError("A constrained answer ends where its grammar does; stop_at_eos=False is for unconstrained runs.")
        budget = max_new_tokens or self.max_new_tokens
        inputs = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(self.model.device)
        masker = self.constraint.masker(self.grammar(labels), len(prompts), budget) if constrained else None
        decoded = decode(self.model, inputs["input_ids"], inputs["attention_mask"], budget=budget,
                         eos_token_id=self.eos_token_id if stop_at_eos else self._n_vocab,
                         pad_token_id=int(self.tokenizer.pad_token_id), masker=masker, do_sample=do_sample)
        answers = []
        for row in decoded.rows:
            ended = bool(row) and row[-1] == self.eos_token_id
            tokens = row[:-1] if ended else row
            answers.append(Generation(self.tokenizer.decode(tokens, skip_special_tokens=True), len(tokens),
                                      truncated=not ended and len(tokens) >= budget, forwards=decoded.forwards))
        return answers

    # 3. planning --------------------------------------------------------------------------------
    def plan(self, request: str, *, labels: Sequence[str], conversation: Sequence[ChatTurn] = ()) -> PlanResult:
        return self.plan_many([request], labels=labels, conversations=[conversation])[0]

    def plan_many(self, requests: Sequence[str], *, labels: Sequence[str],
                  conversations: Sequence[Sequence[ChatTurn]] | None = None) -> list[PlanResult]:
        """Plans for several requests on one image, generated as one batch."""
        conversations = conversations or [()] * len(requests)
        languages = [detect_language(r) for r in requests]
        prompts = [self.prompt(r, labels, c, lang) for r, c, lang in zip(requests, conversations, languages, strict=True)]
        generations = self.generate(prompts, labels)
        return [self._result(g, labels, lang) for g, lang in zip(generations, languages, strict=True)]

    def _result(self, generation: Generation, labels: Sequence[str], language: Language) -> PlanResult:
        text, cut = complete_prefix(generation.text) if generation.truncated else (generation.text, False)
        not_understood = []
        if cut:
            not_understood.append(NotUnderstood(generation.text[-80:], say(
                language, f"The model's answer ran past {generation.tokens} tokens; only its finished commands are kept.",
                f"模型的回答超过了 {generation.tokens} 个 token；只保留了完整的命令。")))
        try:
            items = extract_commands(text)
        except CommandsNotFound as exc:
            items = []
            not_understood.append(NotUnderstood(text[:80], str(exc)))
        outcome = validate(items, labels, self.rules)
        result = PlanResult(reply="", commands=outcome.commands, rejections=outcome.rejections,
                            not_understood=not_understood, language=language)
        result.reply = summary_reply(result, quote_clauses=False)
        return result


__all__ = ["Generation", "LocalPlanner", "load_chat_model"]
