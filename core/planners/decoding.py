"""The local planner's decode loop: one forward pass per *chosen* token, none for a forced one.

Why not transformers' ``generate``: it makes one forward pass per token, and under the
command grammar about a third of an answer's tokens are forced (``{"command":"`` after
``[``, ``","paras":[`` after a command's name, the end of a label after its first letters),
so a third of its forward passes only confirm what the grammar already decided. Here a
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

    device = input_ids.device
    rows = input_ids.shape[0]
    cache = DynamicCache(config=model.config)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
    written: list[list[int]] = [[] for _ in range(rows)]
    live = [True] * rows
    with torch.inference_mode():
        output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                       past_key_values=cache, use_cache=True, logits_to_keep=1)
        scores = output.logits[:, -1].float()
        next_position = positions[:, -1] + 1
        forwards = 1
        while True:
            if masker is not None:
                scores = masker.mask(scores)
            if do_sample:
                chosen = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            else:
                chosen = scores.argmax(dim=-1)
            tokens = chosen.tolist()
            extra = masker.advance(tokens) if masker is not None else None
            appended: list[list[int]] = []
            for row in range(rows):
                if not live[row]:
                    appended.append([pad_token_id])
                    continue
                new = [tokens[row], *extra[row]] if extra is not None else [tokens[row]]
                appended.append(new)
                written[row].extend(new)
                if eos_token_id in new or len(written[row]) >= budget or (masker is not None and masker.done[row]):
                    live[row] = False
            if not any(live):
                return Decoded(written, forwards)
            width = max(map(len, appended))
            lengths = [len(new) for new in appended]
            if width == 1:
                step_ids = torch.tensor(appended, device=device)
                step_mask = torch.ones((rows, 1), dtype=attention_mask.dtype, device=device)
                step_positions = next_position[:, None]
            else:
                step_ids = torch.tensor([new + [pad_token_id] * (width - len(new)) for new in appended], device=device)
                step_mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths], dtype=attention_mask.dtype,
                                         device=device)
                step_positions = next_position[:, None] + torch.arange(width, device=device)
            attention_mask = torch.cat([attention_mask, step_mask], dim=-1)
            # The head only where some row's next token is chosen: at 150k words it is a quarter of a 0.5B model.
            keep = sorted({n - 1 for n in lengths}) if width > 1 else [0]
            output = model(input_ids=step_ids, attention_mask=attention_mask, position_ids=step_positions,
                           past_key_values=cache, use_cache=True,
                           logits_to_keep=1 if keep == [width - 1] else torch.tensor(keep, device=device))
            forwards += 1
            if len(keep) == 1:
                scores = output.logits[:, -1].float()
            else:
                where = torch.tensor([keep.index(n - 1) for n in lengths], device=device)
                scores = output.logits[torch.arange(rows, device=device), where].float()
            next_position = next_position + (1 if width == 1 else torch.tensor(lengths, device=device))
