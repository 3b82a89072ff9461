"""The local planner's decode loop: one forward pass per *chosen* token, none for a forced one.

Why not transformers' ``generate``: it makes one forward pass per token, and under the
command grammar a large share of an answer's tokens are forced (``{"command":"`` after
``[``, ``","paras":[`` after a command's name, the end of a label after its first letters),
and each of their forward passes only confirms what the grammar already decided. Here a
row's forced tokens are appended with its chosen token and go through the model together,
in one pass (SGLang calls this jump-forward decoding). Rows of a batch that append
different numbers of tokens are padded *after* their tokens, masked out by the attention
mask and skipped by the position ids, exactly as left padding is; each row's next scores
are read at its own last token.

What is kept from ``generate``: the KV cache (``DynamicCache``), left padding, greedy or
plain multinomial sampling (temperature 1, no top-k/top-p), the end token. What is not:
the model's own sampling defaults (``generation_config``: temperature, top-p, repetition
penalty) — planning is greedy, and a repetition penalty only fights JSON's repeated keys.
Unconstrained decoding (the benchmark's baseline, the tests' contrast) goes through the
same loop, so the two are compared on equal terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from core.planners.constrained import CommandMasker


@dataclass(frozen=True)
class Decoded:
    """Each row's new tokens (its end token included when it wrote one) and the forward passes the batch took."""

    rows: list[list[int]]
    forwards: int


def decode(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, budget: int, eos_token_id: int,
           pad_token_id: int, masker: CommandMasker | None = None, do_sample: bool = False) -> Decoded:
    """Up to ``budget`` new tokens per left-padded row; a row ends at ``eos_token_id`` or when its budget is spent.

    ``eos_token_id`` may be an id the model cannot write (the benchmark's fixed-length runs).
    """
    import torch
    from transformers import DynamicCache

    rows = input_ids.shape[0]
    cache = DynamicCache(config=model.config)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
    written: list[list[int]] = [[] for _ in range(rows)]
    live = [True] * rows
    with torch.inference_mode():
        output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                       past_key_values=cache, use_cache=True, logits_to_keep=1)
        scores, next_position, forwards = output.logits[:, -1].float(), positions[:, -1] + 1, 1
        while True:
            if masker is not None:
                scores = masker.mask(scores)
            if do_sample:
                chosen = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            else:
                chosen = scores.argmax(dim=-1)
            tokens = chosen.tolist()
            extra = masker.advance(tokens) if masker is not None else [[] for _ in tokens]
            appended: list[list[int]] = []
            for row in range(rows):
                new = [tokens[row], *extra[row]] if live[row] else [pad_token_id]
                appended.append(new)
                if live[row]:
                    written[row].extend(new)
                    live[row] = not (eos_token_id in new or len(written[row]) >= budget
                                     or (masker is not None and masker.done[row]))
            if not any(live):
                return Decoded(written, forwards)
            step = _Step.of(appended, next_position, pad_token_id, attention_mask.dtype)
            attention_mask = torch.cat([attention_mask, step.mask], dim=-1)
            output = model(input_ids=step.ids, attention_mask=attention_mask, position_ids=step.positions,
                           past_key_values=cache, use_cache=True, logits_to_keep=step.logits_to_keep)
            scores, next_position, forwards = step.scores(output.logits), step.next_position, forwards + 1


@dataclass(frozen=True)
class _Step:
    """One forward pass's inputs when rows append different numbers of tokens, and where to read their scores."""

    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    next_position: torch.Tensor
    #: The sequence positions the head runs at: only where some row's next token is chosen (at a 150k
    #: vocabulary the head is a quarter of a 0.5B model, and a pass carrying forced tokens needs it once per row).
    keep: list[int]
    #: Per row, its index into ``keep``: its last appended token.
    last: list[int]

    @classmethod
    def of(cls, appended: list[list[int]], next_position: torch.Tensor, pad_token_id: int, dtype: torch.dtype) -> _Step:
        import torch

        device = next_position.device
        lengths = [len(new) for new in appended]
        width = max(lengths)
        ids = torch.tensor([new + [pad_token_id] * (width - len(new)) for new in appended], device=device)
        mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths], dtype=dtype, device=device)
        positions = next_position[:, None] + torch.arange(width, device=device)
        keep = sorted({n - 1 for n in lengths})
        return cls(ids, mask, positions, next_position + torch.tensor(lengths, device=device), keep,
                   [keep.index(n - 1) for n in lengths])

    @property
    def logits_to_keep(self) -> int | torch.Tensor:
        import torch

        return 1 if len(self.keep) == 1 else torch.tensor(self.keep, device=self.ids.device)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        import torch

        if len(self.keep) == 1:
            return logits[:, -1].float()
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, torch.tensor(self.last, device=logits.device)].float()
