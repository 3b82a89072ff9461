"""Opening the real Streamlit app in AppTest, the one way every app test does it."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).parents[1] / "app" / "streamlit_app.py")


def open_app(page: str | None = None, **query: str) -> AppTest:
    """The app after its first run, with these query parameters, switched to ``views/<page>.py`` if given;
    fails the test if the page raised."""
    at = AppTest.from_file(ENTRY, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    return at
