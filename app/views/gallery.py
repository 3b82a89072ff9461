"""The Gallery page (its logic is in app/ui/gallery.py)."""

from app.ui.gallery import render

render()
