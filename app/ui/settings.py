"""The Settings page: a person's editing defaults, checked and stored in the database.

They sit between a command's own parameters and the rules' templates:
command > these > template > defaults.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.ui.common import get_services
from core.rules import load_rules
from jobs.user_settings import PREFERENCES, InvalidPreferences, get_preferences, save_preferences


def render() -> None:
    services = get_services()
    st.title("Settings")
    st.write("Your defaults for every edit you run. A value set here replaces the built-in default and the "
             "command's template; a value written in a command itself still wins. Leave a setting on "
             "**default** to use the built-in value.")
    stored = get_preferences(services)
    defaults = load_rules().defaults
    notice = st.session_state.pop("settings_notice", None)
    if notice:
        st.success(notice)

    with st.form("preferences"):
        values: dict[str, Any] = {}
        for pref in PREFERENCES:
            builtin = services.settings.planner if pref.key == "planner" else defaults.get(pref.key)
            use = st.checkbox(f"Set my own **{pref.label}** (built-in: {builtin})", value=pref.key in stored,
                              key=f"use_{pref.key}")
            current = stored.get(pref.key, builtin)
            widget_key = f"pref_{pref.key}"
            if pref.kind == "bool":
                value: Any = st.toggle(pref.label, value=bool(current), key=widget_key, help=pref.help)
            elif pref.kind == "choice":
                options = list(pref.choices)
                value = st.selectbox(pref.label, options, index=options.index(current) if current in options else 0,
                                     key=widget_key, help=pref.help)
            elif pref.kind == "int":
                value = st.number_input(pref.label, value=int(current if current is not None else 0), step=1,
                                        key=widget_key, help=f"{pref.help} From {pref.low:g} to {pref.high:g}.")
            else:
                value = st.number_input(pref.label, value=float(current if current is not None else 0.0), step=0.05,
                                        key=widget_key, format="%.2f",
                                        help=f"{pref.help} From {pref.low:g} to {pref.high:g}.")
            if use:
                values[pref.key] = value
        saved = st.form_submit_button("Save settings", type="primary")
    if saved:
        try:
            clean = save_preferences(services, values)
        except InvalidPreferences as exc:
            st.error(str(exc) + " Nothing was changed.")
        else:
            st.session_state["settings_notice"] = (
                "Saved: " + ", ".join(f"{k} = {v}" for k, v in clean.items()) if clean
                else "Saved: every setting uses its built-in default.")
            st.rerun()
    if stored and st.button("Reset all to built-in defaults", key="reset_preferences"):
        save_preferences(services, {})
        for pref in PREFERENCES:
            st.session_state.pop(f"use_{pref.key}", None)
            st.session_state.pop(f"pref_{pref.key}", None)
        st.session_state["settings_notice"] = "Saved: every setting uses its built-in default."
        st.rerun()
