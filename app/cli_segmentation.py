"""``chatedit models export-segmenter`` and ``chatedit segment`` (issue 5)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add this module's commands to the ``chatedit`` group."""
