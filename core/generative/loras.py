"""LoRA adapters from the LoRA folder (the thesis' GetLoras), applied to a pipeline with weights.

A selection names adapters by their file stem; the name is looked up in the folder's
listing, never joined to a path as given, because selections come from people.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoraChoice:
    name: str
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight}


class UnknownLora(ValueError):
    def __init__(self, name: str, available: list[str]) -> None:
        listing = ", ".join(available) if available else "none"
        super().__init__(f"There is no LoRA called {name!r} in the LoRA folder (available: {listing}).")
        self.name = name


class LoraFolderMissing(ValueError):
    def __init__(self) -> None:
        super().__init__("LoRAs were selected but no LoRA folder is configured; set CHATEDIT_LORA_DIR.")


def list_loras(lora_dir: Path | None) -> dict[str, Path]:
    """Adapter name → file, for every ``.safetensors`` file in the folder (sorted; empty without a folder)."""
    if lora_dir is None or not Path(lora_dir).is_dir():
        return {}
    return {p.stem: p for p in sorted(Path(lora_dir).glob("*.safetensors")) if p.is_file()}


def parse_choices(raw: object) -> list[LoraChoice]:
    """``[{"name": ..., "weight": ...}, ...]`` (as stored in a person's settings) into choices."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError('loras must be a list like [{"name": "film", "weight": 0.8}].')
    choices = []
    for item in raw:
        if isinstance(item, str):
            choices.append(LoraChoice(item))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            weight = item.get("weight", 1.0)
            if not isinstance(weight, int | float) or not -2.0 <= float(weight) <= 2.0:
                raise ValueError(f"The weight of LoRA {item['name']!r} must be a number in [-2, 2], not {weight!r}.")
            choices.append(LoraChoice(item["name"], float(weight)))
        else:
            raise ValueError(f"A LoRA choice must be a name or {{'name': ..., 'weight': ...}}, not {item!r}.")
    return choices


def apply_loras(pipe: Any, choices: Iterable[LoraChoice], lora_dir: Path | None) -> list[LoraChoice]:
    """Load (once) and activate exactly these adapters with their weights; none chosen: LoRA off."""
    choices = list(choices)
    loaded = set(_loaded_adapters(pipe))
    if not choices:
        if loaded:
            pipe.disable_lora()
        return []
    if lora_dir is None:
        raise LoraFolderMissing()
    available = list_loras(lora_dir)
    for choice in choices:
        if choice.name not in available:
            raise UnknownLora(choice.name, list(available))
        if choice.name not in loaded:
            path = available[choice.name]
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=choice.name)
    pipe.enable_lora()
    pipe.set_adapters([c.name for c in choices], adapter_weights=[c.weight for c in choices])
    return choices


def _loaded_adapters(pipe: Any) -> list[str]:
    try:
        listing = pipe.get_list_adapters()
    except (AttributeError, ValueError):
        return []
    return sorted({name for names in listing.values() for name in names})
