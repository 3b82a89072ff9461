"""The app's pages, in menu order; other pages link to them through these paths."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).parents[1] / "views"
EDITOR = PAGES_DIR / "editor.py"
GALLERY = PAGES_DIR / "gallery.py"
SETTINGS = PAGES_DIR / "settings.py"
STATUS = PAGES_DIR / "status.py"
MANUAL = PAGES_DIR / "manual.py"


#: The Editor's own address: links such as ``/editor?history=N`` (a pasted URL, a bookmark) open it.
EDITOR_URL_PATH = "editor"


def pages() -> list[st.Page]:  # type: ignore[name-defined]
    """The menu, plus the Editor once more at ``/editor``.

    Streamlit serves the default page only at the root URL (its own ``url_path`` answers
    "Page not found"), so the Editor is the default at ``/`` and a hidden page at ``/editor``.
    ``st.switch_page(EDITOR)`` takes the first, the menu's entry.
    """
    return [
        st.Page(EDITOR, title="Editor", icon=":material/brush:", url_path="home", default=True),
        st.Page(GALLERY, title="Gallery", icon=":material/photo_library:", url_path="gallery"),
        st.Page(SETTINGS, title="Settings", icon=":material/tune:", url_path="settings"),
        st.Page(STATUS, title="Status", icon=":material/monitor_heart:", url_path="status"),
        st.Page(MANUAL, title="Manual", icon=":material/menu_book:", url_path="manual"),
        st.Page(EDITOR, title="Editor", icon=":material/brush:", url_path=EDITOR_URL_PATH, visibility="hidden"),
    ]
