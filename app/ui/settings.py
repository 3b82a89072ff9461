"""The Settings page: a person's editing defaults, checked and stored in the database.

They sit between a command's own parameters and the rules' templates:
command > these > template > defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from app.ui.common import get_services
from app.ui.identity import can, current_actor
from core.backends import GENERATIVE_BACKENDS, OPENAI_IMAGE_VARIABLE
from core.planner_install import local_planner_model
from core.rules import load_rules
from core.settings import Settings
from jobs.services import Services, training
from jobs.services.permissions import Actor, PermissionDenied
from jobs.user_settings import (
    LORA_WEIGHT_HIGH,
    LORA_WEIGHT_LOW,
    MAX_MODEL_NAME,
    PREFERENCES,
    InvalidPreferences,
    Preference,
    get_preferences,
    save_preferences,
)

#: The preference that names a registered fine-tuned planner (a choice of them, not free text).
FINE_TUNED = "fine_tuned_planner"
#: What each planner is, in one sentence.
PLANNER_ABOUT = {
    "rules": "Offline rule parser for English and Chinese: no key, no network, always available.",
    "openai": "Any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, llama.cpp server); replies stream into the chat.",
    "local": "A local transformers model (with an optional LoRA adapter), run by a worker that keeps it loaded.",
}


def planner_problem(name: str, settings: Settings) -> str | None:
    """Why a planner cannot answer in this installation, or None when it can."""
    if name == "openai" and not settings.openai_model:
        return ("not configured: set CHATEDIT_OPENAI_MODEL (and CHATEDIT_OPENAI_BASE_URL / CHATEDIT_OPENAI_API_KEY "
                "for a server other than OpenAI's) to use it.")
    if name == "local" and local_planner_model(settings) is None:
        return ("not configured: run `chatedit models install-planner smollm2`, or set CHATEDIT_LOCAL_LLM to a .gguf "
                "file, an HF id or a local model directory to use it.")
    return None


def editor_rows(settings: Settings) -> list[dict[str, str]]:
    """Which editing backend runs each kind of command here, and what enables the missing ones."""
    rows = [{"commands": "adjust, recolor, blur, remove (fallback)", "backend": "classical (OpenCV)",
             "available": "yes", "note": "Exact edits on the CPU; always available."}]
    for backend in GENERATIVE_BACKENDS:
        value = getattr(settings, backend.field, None)
        rows.append({"commands": ", ".join(backend.commands), "backend": str(value) if value else "none",
                     "available": "yes" if value else "no",
                     "note": f"Set by {backend.variable}." if value else
                     f"Not configured: set {backend.variable} to {backend.needs} to enable it."})
    fallback = settings.openai_image_model
    rows.append({"commands": "any of these, when its model is missing or fails", "backend": fallback or "none",
                 "available": "yes" if fallback else "no",
                 "note": f"OpenAI image edit, set by {OPENAI_IMAGE_VARIABLE}." if fallback else
                 f"Not configured: set {OPENAI_IMAGE_VARIABLE} (and an API key) to enable the OpenAI image edit."})
    return rows


def builtin_value(pref: Preference, settings: Settings, defaults: dict[str, Any]) -> Any:
    """What a setting is when the person sets none: the installation's planner and model, else the built-in default."""
    if pref.key == "planner":
        return settings.planner
    if pref.key == "planner_model":
        return settings.openai_model
    return pref.builtin if pref.builtin is not None else defaults.get(pref.key)


def available_loras(settings: Settings) -> list[str]:
    """The ``*.safetensors`` files in CHATEDIT_LORA_DIR, by name (empty when the folder is not set or missing)."""
    folder = settings.lora_dir
    if folder is None or not Path(folder).is_dir():
        return []
    return sorted(p.name for p in Path(folder).glob("*.safetensors") if p.is_file())


def render() -> None:
    services = get_services()
    actor = current_actor()
    may_save = can("settings.own")
    st.title("Settings")
    st.write("Your defaults for every edit you run. A value set here replaces the built-in default and the "
             "command's template; a value written in a command itself still wins. Leave a setting on "
             "**default** to use the built-in value. They are yours alone: other people have their own.")
    if not may_save:
        st.info(f"{actor.label} ({actor.role}) may read these settings but not change them: they are the defaults "
                "of the edits someone runs, and this account runs none.")
    stored = get_preferences(services, actor.id)
    defaults = load_rules().defaults
    notice = st.session_state.pop("settings_notice", None)
    if notice:
        st.success(notice)

    _backends(services.settings, stored)
    planners = training.planner_models(services)

    with st.form("preferences"):
        values: dict[str, Any] = {}
        for pref in PREFERENCES:
            if pref.kind == "loras":
                continue
            builtin = builtin_value(pref, services.settings, defaults)
            use = st.checkbox(f"Set my own **{pref.label}** (built-in: {builtin if builtin is not None else 'none'})",
                              value=pref.key in stored, key=f"use_{pref.key}")
            current = stored.get(pref.key, builtin)
            widget_key = f"pref_{pref.key}"
            shown = shown_value(pref, current)
            if pref.key == FINE_TUNED:
                value: Any = _fine_tuned_select(pref, planners, shown, widget_key)
            elif pref.kind == "text":
                value = st.text_input(pref.label, value=shown, key=widget_key, help=pref.help,
                                           max_chars=MAX_MODEL_NAME)
            elif pref.kind == "bool":
                value = st.toggle(pref.label, value=shown, key=widget_key, help=pref.help)
            elif pref.kind == "choice":
                options = list(pref.choices)
                value = st.selectbox(pref.label, options, index=options.index(shown), key=widget_key, help=pref.help)
            elif pref.kind == "int":
                value = st.number_input(pref.label, value=shown, step=1,
                                        key=widget_key, help=f"{pref.help} From {pref.low:g} to {pref.high:g}.")
            else:
                value = st.number_input(pref.label, value=shown, step=0.05,
                                        key=widget_key, format="%.2f",
                                        help=f"{pref.help} From {pref.low:g} to {pref.high:g}.")
            if use or value != shown:  # a value the person changed is theirs, ticked or not
                values[pref.key] = None if pref.key == FINE_TUNED and not value else value  # None: the team's
        loras = _lora_inputs(services.settings, stored.get("loras") or [])
        if loras:
            values["loras"] = loras
        saved = st.form_submit_button("Save settings", type="primary", disabled=not may_save)
    if saved:
        try:
            clean = save_preferences(services, values, actor.id)
        except (InvalidPreferences, PermissionDenied) as exc:
            st.error(str(exc) + " Nothing was changed.")
        else:
            st.session_state["settings_notice"] = (
                "Saved: " + ", ".join(f"{k} = {_shown(v)}" for k, v in clean.items()) if clean
                else "Saved: every setting uses its built-in default.")
            _forget_widgets()  # the form shows what is stored now, ticks included
            st.rerun()
    if may_save and stored and st.button("Reset all to built-in defaults", key="reset_preferences"):
        save_preferences(services, {}, actor.id)
        _forget_widgets()
        st.session_state["settings_notice"] = "Saved: every setting uses its built-in default."
        st.rerun()
    if can("training.run"):
        _team_default_planner(services, actor, planners)


def _fine_tuned_select(pref: Preference, planners: list[training.PlannerModelRecord], shown: str, key: str) -> str:
    """The fine-tuned planner as a choice of the registered ones ("" is the team's default)."""
    default = next((m.name for m in planners if m.is_default), None)
    options = ["", *(m.name for m in planners)]
    if shown and shown not in options:  # stored, but no planner has that name here
        options.append(shown)
    about = {m.name: f"{m.name} (run {m.run_id}, step {m.step})" if m.step is not None else m.name for m in planners}
    team = f"team default ({default})" if default else "team default (none: the local planner's base model)"
    return st.selectbox(pref.label, options, index=options.index(shown), key=key, help=pref.help,
                        format_func=lambda n: team if not n else about.get(n, f"{n} (not registered)"))


def _team_default_planner(services: Services, actor: Actor, planners: list[training.PlannerModelRecord]) -> None:
    """Admins choose which fine-tuned planner answers everyone who chose none of their own."""
    st.subheader("Team default planner")
    if not planners:
        st.caption("No fine-tuned planner is registered yet: use a checkpoint as a planner on the Fine-tuning page.")
        return
    by_id = {m.id: m for m in planners}
    current = next((m.id for m in planners if m.is_default), None)
    options: list[int | None] = [None, *by_id]
    chosen = st.selectbox("Team default planner", options, index=options.index(current), key="team_default_planner",
                          format_func=lambda i: "none (the installation's planner)" if i is None else by_id[i].name,
                          help="The fine-tuned planner that answers everyone who chose no planner, or chose the "
                               "local planner without a fine-tuned one of their own.")
    if not st.button("Set the team default", key="set_team_default", disabled=chosen == current):
        return
    try:
        training.set_default_planner(services, actor, chosen)
    except (training.TrainingError, PermissionDenied) as exc:
        st.error(str(exc))
        return
    st.session_state["settings_notice"] = (f"{by_id[chosen].name} is the team's default planner now." if chosen
                                           is not None else "The team has no default fine-tuned planner now.")
    _forget_widgets()
    st.rerun()


def shown_value(pref: Preference, current: Any) -> Any:
    """What the form's input shows for ``current``; a different value on Save means the person changed it."""
    if pref.kind == "text":
        return "" if current is None else str(current)
    if pref.kind == "bool":
        return bool(current)
    if pref.kind == "choice":
        return current if current in pref.choices else pref.choices[0]
    if pref.kind == "int":
        return int(current if current is not None else 0)
    return float(current if current is not None else 0.0)


def _forget_widgets() -> None:
    """Drop the form's widget states, so the next run builds them from the stored values."""
    for key in [k for k in st.session_state if str(k).startswith(("use_", "pref_", "lora_", "team_default"))]:
        st.session_state.pop(key, None)


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(f"{item['name']} × {item['weight']:g}" for item in value)
    return str(value)


def _backends(settings: Settings, stored: dict[str, Any]) -> None:
    with st.expander("Backends in this installation", expanded=True):
        st.markdown("**Planner** — who turns your words into commands (choose yours below):")
        chosen = stored.get("planner") or settings.planner
        if stored.get("planner_model"):
            settings = settings.model_copy(update={"openai_model": stored["planner_model"]})
        for name, about in PLANNER_ABOUT.items():
            problem = planner_problem(name, settings)
            mark = ":material/check_circle:" if problem is None else ":material/block:"
            text = f"{mark} **{name}**{' (yours)' if name == chosen else ''} — {about}"
            if name == "openai" and settings.openai_model:
                text += f" Model: `{settings.openai_model}`" + (" (yours)." if stored.get("planner_model") else ".")
            st.markdown(text + (f" :orange[{problem[0].upper() + problem[1:]}]" if problem else ""))
        if planner_problem(chosen, settings):
            st.warning(f"Your planner, {chosen}, is {planner_problem(chosen, settings)} Until then the chat answers "
                       "with this sentence; choose another planner below to chat now.")
        st.markdown("**Editor** — who runs the commands:")
        st.table(editor_rows(settings))
        if stored.get("editor_backend") == "classical":
            refused = [n for n, rule in load_rules().commands.items() if rule.generative and not rule.classical_fallback]
            st.info("Your editor backend is **classical**: your edits never use a generative model (remove uses "
                    f"OpenCV inpainting; {', '.join(refused)} are refused). Set Editor backend to auto below to use "
                    "the generative models listed here.")
        if settings.vision_model:
            st.caption(f"Advice (the editor's **Advise** button): {settings.vision_model}.")
        else:
            st.caption("Advice is off: set CHATEDIT_VISION_MODEL to a vision chat model to get the **Advise** button.")


def _lora_inputs(settings: Settings, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """LoRA adapters from CHATEDIT_LORA_DIR with a weight each (inside the form)."""
    st.markdown("**LoRA adapters** (generative edits only)")
    found = available_loras(settings)
    weights = {item["name"]: item["weight"] for item in stored}
    missing = [name for name in weights if name not in found]
    if settings.lora_dir is None:
        st.caption("No LoRA folder: set CHATEDIT_LORA_DIR to a folder of .safetensors adapters to choose them here.")
    elif not found:
        st.caption(f"There are no .safetensors files in {settings.lora_dir}.")
    if missing:
        st.warning(f"Not in the LoRA folder any more, so dropped when you save: {', '.join(missing)}.")
    if not found:
        return []
    loras: list[dict[str, Any]] = []
    for name in found:
        use_col, weight_col = st.columns([2, 3])
        use = use_col.checkbox(f"Use **{name}**", value=name in weights, key=f"lora_use_{name}")
        weight = weight_col.slider(f"Weight of {name}", LORA_WEIGHT_LOW, LORA_WEIGHT_HIGH,
                                   float(weights.get(name, 0.8)), step=0.05, key=f"lora_weight_{name}",
                                   help="Applied to every generative edit you run while it is ticked.")
        if use:
            loras.append({"name": name, "weight": weight})
    return loras  # more than MAX_LORAS is refused with a sentence when saving
