"""The app's pages, in menu order, for the person signed in; other pages link to them through these paths.

A page someone may not use is not in their menu; each page also checks again when it runs
(``require``), so a typed URL or a stale link is refused with a sentence, not served.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from jobs.services.permissions import Actor, allowed

PAGES_DIR = Path(__file__).parents[1] / "views"
EDITOR = PAGES_DIR / "editor.py"
GALLERY = PAGES_DIR / "gallery.py"
REVIEW = PAGES_DIR / "review.py"
DATASETS = PAGES_DIR / "datasets.py"
EVALUATION = PAGES_DIR / "evaluation.py"
FINETUNE = PAGES_DIR / "finetune.py"
SETTINGS = PAGES_DIR / "settings.py"
ACCOUNTS = PAGES_DIR / "accounts.py"
STATUS = PAGES_DIR / "status.py"
MANUAL = PAGES_DIR / "manual.py"


#: The Editor's own address: links such as ``/editor?history=N`` (a pasted URL, a bookmark) open it.
EDITOR_URL_PATH = "editor"

#: Every page with the permission that puts it in the menu (None: everyone signed in). The authorization
#: matrix test holds every page here to an expected row, so a new page cannot be added without one.
PAGE_PERMISSIONS: dict[str, str | None] = {
    "editor": None,
    "gallery": None,
    "review": "review.decide",
    "datasets": "datasets.manage",
    "evaluation": "datasets.manage",
    "finetune": "training.run",
    "settings": None,
    "accounts": "users.manage",
    "status": None,
    "manual": None,
}


def pages(actor: Actor) -> list[st.Page]:  # type: ignore[name-defined]
    """The menu for ``actor``, plus the Editor once more at ``/editor``.

    Streamlit serves the default page only at the root URL (its own ``url_path`` answers
    "Page not found"), so the Editor is the default at ``/`` and a hidden page at ``/editor``.
    ``st.switch_page(EDITOR)`` takes the first, the menu's entry.
    """
    entries = [
        (EDITOR, "Editor", ":material/brush:", "home"),
        (GALLERY, "Gallery", ":material/photo_library:", "gallery"),
        (REVIEW, "Review", ":material/rate_review:", "review"),
        (DATASETS, "Datasets", ":material/dataset:", "datasets"),
        (EVALUATION, "Evaluation", ":material/analytics:", "evaluation"),
        (FINETUNE, "Fine-tuning", ":material/model_training:", "finetune"),
        (SETTINGS, "Settings", ":material/tune:", "settings"),
        (ACCOUNTS, "Accounts", ":material/group:", "accounts"),
        (STATUS, "Status", ":material/monitor_heart:", "status"),
        (MANUAL, "Manual", ":material/menu_book:", "manual"),
    ]
    menu = []
    for path, title, icon, url_path in entries:
        needed = PAGE_PERMISSIONS[path.stem]
        if needed is None or allowed(actor, needed):
            menu.append(st.Page(path, title=title, icon=icon, url_path=url_path, default=path == EDITOR))
    menu.append(st.Page(EDITOR, title="Editor", icon=":material/brush:", url_path=EDITOR_URL_PATH, visibility="hidden"))
    return menu
