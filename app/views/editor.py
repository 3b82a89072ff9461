"""The Editor page (its logic is in app/ui/editor.py)."""

from app.ui.editor import render

render()
