"""The Evaluation page (app/ui/evaluation.py)."""

from app.ui.evaluation import render

render()
