"""The Manual page (its logic is in app/ui/manual.py)."""

from app.ui.manual import render

render()
