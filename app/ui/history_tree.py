"""A history's tree of steps as rows of thumbnails, one row per branch; a click opens a step.

Each edit continues the oldest line from its parent in the same row, and a step made
from an earlier one starts a new row that says where it branched off, so a long chain
of edits wraps into a few rows and every fork is visible. Streamlit has no clickable
image, so each thumbnail has a button under it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from app.ui.common import command_summary, thumbnail_of
from jobs.gallery import tree_order
from jobs.histories import StepRecord
from jobs.services import Services

#: Thumbnails per row.
COLUMNS = 6


@dataclass(frozen=True)
class Branch:
    """A line of edits: each step made from the one before it; ``parent_id`` is where it branched off."""

    parent_id: int | None
    steps: list[StepRecord]


def branches(steps: Sequence[StepRecord]) -> list[Branch]:
    """The tree as lines of edits, in tree order: each step continues its parent's line when it is the parent's
    oldest child, else it starts a new line."""
    parents = {s.id: s.parent_id for s in steps}
    by_id = {s.id: s for s in steps}
    oldest_child: dict[int, int] = {}
    for step_id in sorted(parents):
        parent = parents[step_id]
        if parent is not None and parent in parents:
            oldest_child.setdefault(parent, step_id)
    lines: list[Branch] = []
    line_of: dict[int, Branch] = {}
    for step_id in tree_order(parents):
        parent = parents[step_id]
        if parent in line_of and oldest_child.get(parent) == step_id:
            line = line_of[parent]
        else:
            line = Branch(parent_id=parent if parent in parents else None, steps=[])
            lines.append(line)
        line.steps.append(by_id[step_id])
        line_of[step_id] = line
    return lines


def step_caption(step: StepRecord) -> str:
    """What made a step, in a few words (the original, its commands, or the kind of job)."""
    if step.parent_id is None:
        return "original"
    if step.commands:
        return "; ".join(command_summary(c) for c in step.commands)
    return step_kind(step)


def step_kind(step: Any) -> str:
    """What made a step that has no commands (a face swap, a generated image)."""
    generation = (step.params or {}).get("generation") or []
    kind = generation[0].get("command") if generation and isinstance(generation[0], dict) else None
    return {"swap_face": "face swap", "generate": "text to image"}.get(str(kind), "no commands")


def render_tree(services: Services, steps: Sequence[StepRecord], base_id: int, *, key: str,
                on_open: Callable[[int], None], selected: int | None = None, columns: int = COLUMNS) -> None:
    """The tree as rows of thumbnails; the base is marked, the selected step's button is highlighted.

    ``on_open(step_id)`` runs (as a button callback, before the page reruns) when a step is clicked.
    """
    for line in branches(steps):
        st.caption("From the original" if line.parent_id is None else f"Branch from step {line.parent_id}")
        for start in range(0, len(line.steps), columns):
            for cell, step in zip(st.columns(columns), line.steps[start:start + columns], strict=False):
                with cell:
                    if step.image_id is not None:
                        st.image(thumbnail_of(services, step.image_id), width="stretch")
                    label = f"Step {step.id}" + (" · base" if step.id == base_id else "")
                    parent = "" if step.parent_id is None else f"From step {step.parent_id}: "
                    st.button(label, key=f"{key}_step_{step.id}", width="stretch",
                              type="primary" if step.id == selected else "secondary",
                              icon=":material/flag:" if step.id == base_id else None,
                              help=f"{parent}{step_caption(step)}", on_click=on_open, args=(step.id,))
