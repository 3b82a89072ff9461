"""The Settings page (its logic is in app/ui/settings.py)."""

from app.ui.settings import render

render()
