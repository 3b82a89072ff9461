"""Where pipelines run and in which precision: fp16 on CUDA (bf16 where fp16 is not supported), fp32 on CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Placement:
    device: str
    dtype: Any  # a torch.dtype; typed loosely so that importing this module does not import torch

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def best_placement() -> Placement:
    import torch

    if torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability()
        return Placement("cuda", torch.float16 if major >= 6 else torch.float32)
    return Placement("cpu", torch.float32)


def free_vram_bytes() -> int | None:
    """Free memory on the current CUDA device, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return int(free)
