"""Planner backends: request + labels (+ conversation) → reply and validated commands.

``make_planner(name)`` is the one place a backend is chosen; the rule planner is the
offline default and needs nothing installed or configured.
"""

from __future__ import annotations

from core.planners.base import (
    ChatTurn,
    NotUnderstood,
    Planner,
    PlannerUnavailable,
    PlanResult,
    detect_language,
)

PLANNERS = ("rules",)


def make_planner(name: str = "rules") -> Planner:
    if name == "rules":
        from core.planners.rule_planner import RulePlanner

        return RulePlanner()
    raise PlannerUnavailable(f"There is no planner called {name!r}; the planners are {', '.join(PLANNERS)}.")


__all__ = ["PLANNERS", "ChatTurn", "NotUnderstood", "PlanResult", "Planner", "PlannerUnavailable",
           "detect_language", "make_planner"]
