"""Recall: what an image file says about how it was made, mapped onto ChatEdit's commands and settings.

Image tools leave their recipe in the PNG. ChatEdit writes its own (``core.recipes``);
stable-diffusion-webui (AUTOMATIC1111) and the tools that copy its habit write a
``parameters`` text chunk::

    a photo of a cat, sitting
    Negative prompt: lowres, blurry
    Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 123, Size: 512x512, Model hash: 6ce0161689

Reading either gives the commands to put back on the Operation Board and the settings
that map onto ours; everything else is listed as not mapped rather than dropped silently.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from core.generative.schedulers import SCHEDULERS
from core.recipes import RECIPE_KEY

#: The text chunk stable-diffusion-webui (and tools that imitate it) write.
PARAMETERS_KEY = "parameters"
#: What a setting's name looks like (the webui's own rule), so a prompt line with a colon is not mistaken for one.
_NAME = re.compile(r"\w[\w \-/]{0,63}")
#: The webui's setting names that mean one of ours, and how to read the value.
_MAPPED: dict[str, tuple[str, type]] = {
    "Steps": ("steps", int),
    "CFG scale": ("cfg_scale", float),
    "Seed": ("seed", int),
    "Denoising strength": ("strength", float),
    "Mask blur": ("mask_blur", int),
}
#: What a ChatEdit recipe's resolved parameters carry that are also a person's settings.
_RECIPE_SETTINGS = ("strength", "cfg_scale", "mask_blur")


@dataclass(frozen=True)
class Recall:
    """What could be reloaded from one image file."""

    #: "chatedit" (our own recipe) or "parameters" (a webui-style text chunk).
    source: str
    #: ChatEdit commands, each ``{"command", "paras"}``; empty for other tools.
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: Setting name (as in the Settings page: steps, cfg_scale, seed, scheduler, strength, mask_blur) → value.
    settings: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    negative_prompt: str = ""
    #: What the file says that ChatEdit has no place for: name → value as written.
    not_mapped: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.commands and not self.settings and not self.prompt and not self.not_mapped


def recall_from_png(png: bytes) -> Recall | None:
    """What a PNG's text chunks say about how it was made; None when it carries neither recipe (or is no PNG)."""
    try:
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG":
                return None
            text = dict(getattr(image, "text", {}) or {})
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if RECIPE_KEY in text:
        try:
            recipe = json.loads(text[RECIPE_KEY])
        except json.JSONDecodeError:
            recipe = None
        if isinstance(recipe, dict):
            return recall_recipe(recipe)
    if text.get(PARAMETERS_KEY, "").strip():
        recalled = parse_parameters(text[PARAMETERS_KEY])
        return None if recalled.empty else recalled
    return None


def recall_recipe(recipe: dict[str, Any]) -> Recall:
    """A ChatEdit recipe's commands, and the settings of its generative run when it had one.

    A classical edit's recipe still lists the default diffusion parameters it did not
    use; reloading those as settings would only pin the defaults, so they are left out.
    """
    commands = [{"command": c["command"], "paras": list(c.get("paras") or [])}
                for c in recipe.get("commands") or [] if isinstance(c, dict) and isinstance(c.get("command"), str)]
    generation = [g for g in recipe.get("generation") or [] if isinstance(g, dict)]
    settings: dict[str, Any] = {}
    prompt = ""
    if generation:
        run = generation[0]
        params = next((p for p in recipe.get("params") or [] if isinstance(p, dict)), {})
        settings.update({k: params[k] for k in _RECIPE_SETTINGS if params.get(k) is not None})
        for key in ("steps", "scheduler", "seed"):
            if run.get(key) is not None:
                settings[key] = run[key]
        prompt = str(run.get("prompt") or "")
    return Recall(source="chatedit", commands=commands, settings=settings, prompt=prompt)


def parse_parameters(text: str) -> Recall:
    """Read a webui ``parameters`` chunk: the prompt, the negative prompt and the settings line.

    The settings line is the last line when it holds at least three ``Name: value`` pairs
    (as the webui itself decides); otherwise every line belongs to the prompts.
    """
    *lines, last = text.strip().split("\n")
    pairs = settings_pairs(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    settings, not_mapped = _map_settings(dict(pairs))
    negative_prompt = "\n".join(negative).strip()
    if negative_prompt:
        not_mapped = {"Negative prompt": negative_prompt, **not_mapped}
    return Recall(source="parameters", settings=settings, prompt="\n".join(prompt).strip(),
                  negative_prompt=negative_prompt, not_mapped=not_mapped)


def settings_pairs(line: str) -> list[tuple[str, str]]:
    """The ``Name: value`` pairs of a settings line, in one pass (a quoted value may hold commas).

    Written as a scan rather than the webui's regular expression, whose backtracking is
    quadratic on a long line without colons, and this text comes from uploaded files.
    """
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while i < n:
        colon = line.find(":", i)
        if colon < 0:
            break
        name = line[i:colon].rsplit(",", 1)[-1].strip()
        j = colon + 1
        while j < n and line[j] == " ":
            j += 1
        if j < n and line[j] == '"':
            k = j + 1
            while k < n and line[k] != '"':
                k += 2 if line[k] == "\\" else 1
            quoted = line[j:k + 1]
            try:
                value = str(json.loads(quoted))
            except json.JSONDecodeError:
                value = quoted.strip('"')
            end = line.find(",", k + 1)
        else:
            end = line.find(",", j)
            value = line[j:end if end >= 0 else n].strip()
        if _NAME.fullmatch(name):
            pairs.append((name, value))
        i = n if end < 0 else end + 1
    return pairs


def _map_settings(written: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    settings: dict[str, Any] = {}
    not_mapped: dict[str, str] = {}
    sampler = written.pop("Sampler", None)
    schedule = written.pop("Schedule type", None)
    if sampler is not None:
        scheduler = _scheduler(sampler, schedule)
        if scheduler is None:
            not_mapped["Sampler"] = sampler if schedule is None else f"{sampler} ({schedule})"
        else:
            settings["scheduler"] = scheduler
    for name, value in written.items():
        target = _MAPPED.get(name)
        number = _number(value, target[1]) if target is not None else None
        if target is None or number is None:
            not_mapped[name] = value
        else:
            settings[target[0]] = number
    return settings, not_mapped


def _scheduler(sampler: str, schedule: str | None) -> str | None:
    """Our scheduler for a webui sampler; newer webuis name the Karras schedule separately."""
    name = sampler.strip()
    if schedule and schedule.strip().lower() == "karras" and not name.endswith("Karras"):
        name = f"{name} Karras"
    elif schedule and schedule.strip().lower() not in ("automatic", "karras"):
        return None  # a schedule ChatEdit cannot reproduce
    return name if name in SCHEDULERS else None


def _number(value: str, kind: type) -> int | float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if kind is int:
        return int(number) if number.is_integer() else None
    return number
