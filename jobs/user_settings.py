"""A person's editing defaults: the "user settings" level of parameter precedence.

Command > these > template > rules defaults (``core.commands.resolve_params``). Only the
keys below are kept; each is checked here, so the Settings page and any other caller
store the same clean values, and a bad value is refused with a sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, JsonValue
from pydantic_core import PydanticCustomError

from core.planners import PLANNERS
from db.models import LOCAL_USER_ID, User
from jobs.services import Services
from jobs.services.permissions import Actor, require

LORA_WEIGHT_LOW, LORA_WEIGHT_HIGH = -2.0, 2.0
MAX_LORAS = 8
SCHEDULERS = ("DPM++ 2M", "DPM++ 2M Karras", "Euler", "Euler a", "DDIM", "PNDM", "UniPC", "LMS")
#: "auto": a generative backend where one is configured, the classical editor otherwise;
#: "classical": never a generative model (``remove`` uses Telea, generative-only commands fail with a sentence).
EDITOR_BACKENDS = ("auto", "classical")
MAX_MODEL_NAME = 200


class InvalidPreferences(ValueError):
    """Settings that cannot be stored; the message names each bad value."""


@dataclass(frozen=True)
class Preference:
    key: str
    label: str
    kind: str  # "float", "int", "bool", "choice", "text", "loras"
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    #: The value used when the person sets none and the rules' defaults do not name it.
    builtin: Any = None


PREFERENCES: tuple[Preference, ...] = (
    Preference("strength", "Strength", "float", 0.0, 1.0,
               help="How far a generative edit may move from the original (0 keeps it, 1 ignores it)."),
    Preference("steps", "Steps", "int", 1, 150, help="Diffusion steps: more is slower and usually finer."),
    Preference("cfg_scale", "Guidance (CFG scale)", "float", 1.0, 30.0,
               help="How strictly a generative edit follows the prompt."),
    Preference("seed", "Seed", "int", -1, 2**31 - 1, help="-1 picks a new random seed for every run."),
    Preference("scheduler", "Scheduler", "choice", choices=SCHEDULERS, help="The diffusion sampler."),
    Preference("controlnet", "ControlNet (keep outlines)", "bool",
               help="Use ControlNet canny guidance so regenerated parts keep their outlines."),
    Preference("mask_blur", "Mask blur (px)", "int", 0, 64, help="Softens the edge of the edited region."),
    Preference("planner", "Planner", "choice", choices=PLANNERS, help="Which planner turns your words into commands."),
    Preference("planner_model", "Planner model (openai planner)", "text",
               help="The model the openai planner asks, e.g. gpt-4o-mini or the name your vLLM, Ollama or "
                    "llama.cpp server serves; replaces CHATEDIT_OPENAI_MODEL for you."),
    Preference("fine_tuned_planner", "Fine-tuned planner (local planner)", "text",
               help="A planner fine-tuned on the Fine-tuning page (its registered name); empty: the team's default "
                    "fine-tuned planner, else the base model."),
    Preference("editor_backend", "Editor backend", "choice", choices=EDITOR_BACKENDS, builtin="auto",
               help="auto: a generative model where one is configured, the classical editor otherwise. "
                    "classical: never a generative model (remove uses OpenCV inpainting; commands only a "
                    "generative model can run are refused)."),
    Preference("mask_optimisation", "Mask optimisation", "bool", builtin=True,
               help="Snap the region a generative edit repaints to the edges of the segmented parts."),
    Preference("loras", "LoRA adapters", "loras", LORA_WEIGHT_LOW, LORA_WEIGHT_HIGH,
               help="LoRA adapters (files in CHATEDIT_LORA_DIR) applied to generative edits, each with a weight."),
)
BY_KEY = {p.key: p for p in PREFERENCES}
#: Parameters a program (the command line, a benchmark, a test) may give a job beside the preferences.
#: The Settings page does not show them, so each is labelled by its key; an ``edit`` or ``generate``
#: job's ``user_settings`` is checked against both tables.
JOB_PARAMETERS: tuple[Preference, ...] = (
    Preference("max_side", "max_side", "int", 8, 4096, help="The side a generative model works at."),
    Preference("face_size", "face_size", "int", 8, 4096, help="The side a face is retouched at."),
    Preference("width", "width", "int", 8, 4096, help="The width of a generated image."),
    Preference("height", "height", "int", 8, 4096, help="The height of a generated image."),
    Preference("text_guidance", "text_guidance", "float", 0.0, 30.0,
               help="How strictly an instruction edit follows the words."),
    Preference("image_guidance", "image_guidance", "float", 0.0, 30.0,
               help="How closely an instruction edit keeps the original image."),
    Preference("openai_size", "openai_size", "int", 64, 4096, help="The side the OpenAI image edit works at."),
)
JOB_BY_KEY = {**BY_KEY, **{p.key: p for p in JOB_PARAMETERS}}
#: Preferences that are not edit parameters (they choose a backend instead).
NOT_PARAMS = {"planner", "planner_model", "fine_tuned_planner"}


def validate_preferences(values: dict[str, Any]) -> dict[str, Any]:
    """Clean values for the known keys (None drops a key); raises InvalidPreferences naming every problem."""
    clean, problems = _cleaned(values, BY_KEY)
    if problems:
        raise InvalidPreferences("These settings cannot be saved: " + "; ".join(problems) + ".")
    return clean


def job_settings_problems(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A job's ``user_settings`` cleaned like the preferences (with :data:`JOB_PARAMETERS` too), and each problem."""
    return _cleaned(values, JOB_BY_KEY)


def _checked_job_settings(values: dict[str, Any]) -> dict[str, Any]:
    clean, problems = job_settings_problems(values)
    if problems:
        raise PydanticCustomError("user_settings", "{problems}", {"problems": "; ".join(problems)})
    return clean


#: A job payload's ``user_settings``: checked and cleaned by :func:`job_settings_problems` when the payload is read.
JobSettings = Annotated[dict[str, JsonValue], Field(default_factory=dict, max_length=50),
                        AfterValidator(_checked_job_settings)]


def _cleaned(values: dict[str, Any], known: dict[str, Preference]) -> tuple[dict[str, Any], list[str]]:
    clean: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in values.items():
        pref = known.get(key)
        if pref is None:
            problems.append(f"there is no setting called {key!r}")
            continue
        if value is None:
            continue
        if pref.kind == "loras":
            loras, lora_problems = _clean_loras(value)
            problems.extend(lora_problems)
            if loras:
                clean[key] = loras
            continue
        if pref.kind == "bool":
            if not isinstance(value, bool):
                problems.append(f"{pref.label} is on or off (true or false), not {value!r}")
                continue
            clean[key] = value
        elif pref.kind == "text":
            text = value.strip() if isinstance(value, str) else None
            if not text or len(text) > MAX_MODEL_NAME or any(c.isspace() or not c.isprintable() for c in text):
                problems.append(f"{pref.label} is a model name of at most {MAX_MODEL_NAME} characters without "
                                f"spaces, not {value!r}")
                continue
            clean[key] = text
        elif pref.kind == "choice":
            if value not in pref.choices:
                problems.append(f"{pref.label} is one of {', '.join(pref.choices)}, not {value!r}")
                continue
            clean[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"{pref.label} must be a number, not {value!r}")
                continue
            if pref.kind == "int" and value != int(value):
                problems.append(f"{pref.label} must be a whole number, not {value!r}")
                continue
            assert pref.low is not None and pref.high is not None
            if not pref.low <= value <= pref.high:
                problems.append(f"{pref.label} must be between {pref.low:g} and {pref.high:g}, not {value:g}")
                continue
            clean[key] = int(value) if pref.kind == "int" else float(value)
    return clean, problems


def _clean_loras(value: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """``[{"name": file name, "weight": number}]``: plain file names (never a path), each once, weights in range."""
    if not isinstance(value, list):
        return [], [f"LoRA adapters are a list of {{name, weight}}, not {value!r}"]
    if len(value) > MAX_LORAS:
        return [], [f"at most {MAX_LORAS} LoRA adapters can be used at once, not {len(value)}"]
    clean: list[dict[str, Any]] = []
    problems: list[str] = []
    for entry in value:
        name = entry.get("name") if isinstance(entry, dict) else None
        weight = entry.get("weight") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.endswith(".safetensors") or "/" in name or "\\" in name \
                or name.startswith("."):
            problems.append(f"a LoRA adapter is named by its .safetensors file name, not {name!r}")
            continue
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or not LORA_WEIGHT_LOW <= weight <= LORA_WEIGHT_HIGH:
            problems.append(f"the weight of LoRA {name} must be a number between {LORA_WEIGHT_LOW:g} and "
                            f"{LORA_WEIGHT_HIGH:g}, not {weight!r}")
            continue
        if any(c["name"] == name for c in clean):
            problems.append(f"LoRA {name} is listed twice")
            continue
        clean.append({"name": name, "weight": float(weight)})
    return clean, problems


def get_preferences(services: Services, user_id: int = LOCAL_USER_ID) -> dict[str, Any]:
    """The person's stored defaults (only what they set; empty when nothing is). Each person has their own."""
    with services.database.session() as session:
        user = session.get(User, user_id)
        return dict(user.preferences or {}) if user is not None else {}


def save_preferences(services: Services, values: dict[str, Any], user_id: int = LOCAL_USER_ID) -> dict[str, Any]:
    """Check and store the person's defaults (replacing the old ones); returns what was stored.

    Only someone who may change their own settings (``settings.own``) saves them: a viewer's or a
    reviewer's are refused with ``PermissionDenied``, nothing stored.
    """
    clean = validate_preferences(values)
    with services.database.write_session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise InvalidPreferences(f"There is no user {user_id}.")
        require(Actor.of(user), "settings.own")
        user.preferences = clean
        session.add(user)
    return clean


def edit_params(preferences: dict[str, Any]) -> dict[str, Any]:
    """The part of the preferences an edit job takes as ``user_settings``."""
    return {k: v for k, v in preferences.items() if k not in NOT_PARAMS}
