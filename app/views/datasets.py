"""The Datasets page (app/ui/datasets.py)."""

from app.ui.datasets import render

render()
