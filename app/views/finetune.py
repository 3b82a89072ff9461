"""The Fine-tuning page (app/ui/finetune.py)."""

from app.ui.finetune import render

render()
