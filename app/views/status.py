"""The Status page (its logic is in app/ui/status.py)."""

from app.ui.status import render

render()
