"""The sign-in gate (a minimal first version: sign-in is off, the local admin acts)."""

from __future__ import annotations

from app.ui.identity import set_actor
from jobs.services import Services
from jobs.services.permissions import Actor, local_actor


def gate(services: Services) -> Actor:
    actor = local_actor(services)
    set_actor(actor)
    return actor
