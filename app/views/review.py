"""The Review page (app/ui/review.py)."""

from app.ui.review import render

render()
