"""Submitting an edit: what the app and ``chatedit edit`` hand the ``edit`` job, checked before it is queued.

The payload is plain JSON so that a worker on another machine needs nothing but the
database, and it is data only (:class:`EditPayload`): ids, commands, the blob key of a
selection (never a file name) and known settings. Who asked is the job's owner, never a
payload field. Commands are checked for shape here (so a person hears about a typo at
once) and again against the image's labels by the handler, which is the only place
that knows them for sure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from pydantic import Field, JsonValue, field_validator
from pydantic_core import PydanticCustomError

from core.backends import backend_problem, runs_generatively
from core.commands import Command, CommandsNotFound, extract_commands, validate
from core.images import ImageRejected, check_dimensions
from core.memory import TooMuchMemory, check_memory
from core.rules import Rules, load_rules
from core.settings import Settings
from db.models import LOCAL_USER_ID
from jobs.errors import InvalidJobRequest
from jobs.images import ImageNotFound, get_image
from jobs.registry import InvalidPayload, Payload
from jobs.services import Services
from jobs.services.access import require_history_write
from jobs.user_settings import JobSettings

EDIT_KIND = "edit"
#: More commands than a person picks from one Operation Board, with room for programs.
MAX_EDIT_COMMANDS = 32
_BLOB_KEY = re.compile(r"[0-9a-f]{64}")
_Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class InvalidEdit(InvalidJobRequest):
    """An edit that cannot be queued; the message says why, in sentences."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or []


class EditPayload(Payload):
    """What an ``edit`` job's row holds: checked before it is queued and again by the handler."""

    image_id: _Id
    commands: Annotated[list[dict[str, JsonValue]], Field(min_length=1, max_length=MAX_EDIT_COMMANDS)]
    history_id: _Id | None = None
    parent_step_id: _Id | None = None
    #: Read from the blob store only, so it must be a blob key; a path would never reach the disk anyway.
    selection_key: str | None = None
    user_settings: JobSettings

    @field_validator("selection_key")
    @classmethod
    def _blob_key(cls, value: str | None) -> str | None:
        if value is not None and not _BLOB_KEY.fullmatch(value):
            raise PydanticCustomError("blob_key", "it must be a blob key (64 lowercase hex digits), never a file name")
        return value


@dataclass(frozen=True)
class EditRequest:
    """One edit job: these commands on this image, recorded as a child of ``parent_step_id``."""

    image_id: int
    commands: list[dict[str, Any]]
    history_id: int | None = None
    parent_step_id: int | None = None
    #: Blob key of a PNG mask (white = selected): the ``Selection`` target.
    selection_key: str | None = None
    #: The person's defaults (parameter precedence: command > these > template > defaults).
    user_settings: dict[str, Any] = field(default_factory=dict)
    #: Who asks: the job's owner. Not part of the payload, so a payload cannot speak for someone else.
    user_id: int = LOCAL_USER_ID

    def to_payload(self) -> dict[str, Any]:
        """The job's payload, checked by :class:`EditPayload`; raises :class:`InvalidEdit` with every problem."""
        payload = asdict(self)
        del payload["user_id"]
        try:
            return EditPayload.parse(EDIT_KIND, payload).model_dump(mode="json", exclude_unset=True)
        except InvalidPayload as exc:
            raise InvalidEdit(str(exc), exc.problems) from None

    @classmethod
    def from_checked(cls, payload: EditPayload, *, user_id: int) -> EditRequest:
        """The request of a checked payload, asked by ``user_id`` (the job's owner)."""
        return cls(image_id=payload.image_id, commands=[dict(c) for c in payload.commands],
                   history_id=payload.history_id, parent_step_id=payload.parent_step_id,
                   selection_key=payload.selection_key, user_settings=dict(payload.user_settings), user_id=user_id)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], *, user_id: int = LOCAL_USER_ID) -> EditRequest:
        """An earlier job's request, to ask again as ``user_id``; raises :class:`InvalidEdit` with every problem.

        Rows queued before the payload stopped naming its user still carry ``user_id``; the person
        asking again is who asks now, so it is left out rather than refused.
        """
        data = {k: v for k, v in payload.items() if k != "user_id"} if isinstance(payload, Mapping) else payload
        try:
            checked = EditPayload.parse(EDIT_KIND, data)
        except InvalidPayload as exc:
            raise InvalidEdit(str(exc), exc.problems) from None
        return cls.from_checked(checked, user_id=user_id)


def parse_commands_text(text: str) -> list[dict[str, Any]]:
    """Commands given as JSON text (a bare array or a planner's reply that contains one)."""
    try:
        items = extract_commands(text)
    except CommandsNotFound:
        raise InvalidEdit("The commands are not a JSON list of command objects, e.g. "
                          '[{"command": "adjust", "paras": ["brightness", 0.3, []]}].') from None
    return items


def check_shape(commands: list[dict[str, Any]]) -> None:
    """Refuse commands that are wrong whatever the image (unknown names, bad paras) before queueing.

    Target labels are checked against every label the contract knows here; whether
    this image has them is the handler's check.
    """
    if not commands:
        raise InvalidEdit("There are no commands to run.")
    validated_commands(commands, _string_targets(commands))


def validated_commands(commands: list[dict[str, Any]], labels: Collection[str],
                       rules: Rules | None = None) -> list[Command]:
    """The commands, valid for these labels, or :class:`InvalidEdit` with every reason; advice alone is refused.

    Called twice per edit: before queueing (any label passes) and by the handler (this image's labels).
    """
    rules = rules or load_rules()
    outcome = validate(commands, labels, rules)
    if outcome.rejections:
        reasons = [f"Command {r.index + 1}: {r.reason}" for r in outcome.rejections]
        raise InvalidEdit(" ".join(reasons), reasons)
    if not any(rules.commands[c.command].executable for c in outcome.commands):
        raise InvalidEdit("These commands are only advice; there is nothing to run.")
    return outcome.commands


def _string_targets(commands: list[dict[str, Any]]) -> list[str]:
    """Every string target given: any label may exist in some image, so none is refused here."""
    labels: list[str] = []
    for item in commands:
        for para in item.get("paras", []) if isinstance(item, dict) else []:
            if isinstance(para, list):
                labels.extend(p for p in para if isinstance(p, str))
    return labels


def lane_for(commands: list[dict[str, Any]], settings: Settings | None = None) -> str:
    """Generative work goes to the GPU lane; exact classical edits are quick and interactive.

    A command with a classical fallback (``remove``) is generative work when its model is configured.
    """
    rules = load_rules()
    needs_gpu = any(
        rules.commands[c["command"]].generative and (
            not rules.commands[c["command"]].classical_fallback or runs_generatively(c["command"], settings, rules))
        for c in commands if c.get("command") in rules.commands
    )
    return "gpu" if needs_gpu else "interactive"


def backend_problems(commands: list[dict[str, Any]], settings: Settings,
                     user_settings: dict[str, Any] | None = None) -> dict[int, str]:
    """For each command (by index) that no configured backend can run: the sentence naming the setting that enables it.

    The edit job's own pre-check (``core.editing.check_runnable``) asks the same question of
    ``core.backends``, so the Operation Board greys exactly what the job would refuse.
    """
    classical_only = (user_settings or {}).get("editor_backend") == "classical"
    problems: dict[int, str] = {}
    for i, item in enumerate(commands):
        name = item.get("command") if isinstance(item, dict) else None
        if isinstance(name, str):
            problem = backend_problem(name, settings, classical_only=classical_only)
            if problem is not None:
                problems[i] = problem
    return problems


def check_memory_fits(settings: Settings, width: int, height: int, commands: list[dict[str, Any]]) -> None:
    """Refuse an edit whose estimated memory (``core.memory``) is over CHATEDIT_MAX_JOB_MEMORY_MB, or whose
    image is outside the side and aspect-ratio caps (an image stored before a cap was lowered).

    Asked before queueing and again by the worker before it loads the pixels, each with its own process's limits.
    """
    names = [c["command"] for c in commands if isinstance(c, dict) and isinstance(c.get("command"), str)]
    try:
        check_dimensions(width, height, max_side=settings.max_image_side, max_aspect_ratio=settings.max_aspect_ratio)
        check_memory(width, height, names, settings.max_job_memory_mb)
    except (ImageRejected, TooMuchMemory) as exc:
        raise InvalidEdit(str(exc)) from None


def _check_image_memory(services: Services, request: EditRequest) -> None:
    try:
        image = get_image(services, request.image_id)
    except ImageNotFound:
        return  # the worker says so, as it does for an image deleted after queueing
    check_memory_fits(services.settings, image.width, image.height, request.commands)


def submit_edit(services: Services, request: EditRequest, *, priority: int = 0) -> int:
    """Check and queue an edit; returns the job id."""
    if isinstance(request.commands, list) and len(request.commands) <= MAX_EDIT_COMMANDS:
        check_shape(request.commands)  # the contract's own words first, e.g. for no commands at all
    payload = json.loads(json.dumps(request.to_payload()))  # plain JSON, as the worker will read it
    _check_image_memory(services, request)
    require_history_write(services, request.user_id, request.history_id)
    return services.queue.enqueue(EDIT_KIND, payload, lane=lane_for(request.commands, services.settings), priority=priority,
                                  owner_id=request.user_id)
