"""The ``edit`` job's payload is data: ids, commands, a blob key and known settings, never a file name.

Whoever may submit an edit (the editor, ``chatedit jobs submit``, a program) gets a sentence
for a payload its model refuses, and nothing is queued; a row written some other way fails
in the handler without touching a file. Who made the result is the job's owner.
"""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from db.models import Image as ImageRow
from jobs.edits import MAX_EDIT_COMMANDS, EditRequest, InvalidEdit, submit_edit
from jobs.histories import get_step, start_history
from jobs.images import get_image, store_array
from jobs.queue import JobStatus, jobs_t
from jobs.registry import InvalidPayload, check_payload
from jobs.services import Services
from tests.conftest import running_worker

ADJUST = [{"command": "adjust", "paras": ["brightness", 0.3, []]}]
KEY = "ab" * 32


def _photo() -> np.ndarray:
    image = np.full((24, 32, 3), (90, 120, 150), dtype=np.uint8)
    image[6:18, 8:24] = (200, 60, 40)
    return image


def assert_sentence(message: str) -> None:
    assert message.startswith("The edit job's payload is not valid: ") and message.endswith(".")
    assert "Traceback" not in message and "\n" not in message
    for repr_like in ("<class", "ValidationError", "pydantic", "For further information"):
        assert repr_like not in message, (repr_like, message)


HOSTILE: list[tuple[str, dict, str]] = [
    ("unknown key", {"image_id": 1, "commands": ADJUST, "script": "rm -rf /"}, "unknown key 'script'"),
    ("a path as output", {"image_id": 1, "commands": ADJUST, "output_path": "/tmp/x.png"},
     "unknown key 'output_path'"),
    ("who asked, in the payload", {"image_id": 1, "commands": ADJUST, "user_id": 2}, "unknown key 'user_id'"),
    ("relative path as selection", {"image_id": 1, "commands": ADJUST, "selection_key": "../../etc/passwd"},
     "selection_key: it must be a blob key"),
    ("device as selection", {"image_id": 1, "commands": ADJUST, "selection_key": "/dev/zero"},
     "selection_key: it must be a blob key"),
    ("absolute path of key length", {"image_id": 1, "commands": ADJUST, "selection_key": "/" + "a" * 63},
     "selection_key: it must be a blob key"),
    ("upper-case hex", {"image_id": 1, "commands": ADJUST, "selection_key": "AB" * 32},
     "selection_key: it must be a blob key"),
    ("key with a newline", {"image_id": 1, "commands": ADJUST, "selection_key": KEY + "\n"},
     "selection_key: it must be a blob key"),
    ("number as selection", {"image_id": 1, "commands": ADJUST, "selection_key": 7}, "selection_key: input should be"),
    ("text image id", {"image_id": "1", "commands": ADJUST}, "image_id: input should be a valid integer"),
    ("float image id", {"image_id": 1.5, "commands": ADJUST}, "image_id: input should be a valid integer"),
    ("boolean image id", {"image_id": True, "commands": ADJUST}, "image_id: input should be a valid integer"),
    ("negative image id", {"image_id": -1, "commands": ADJUST}, "image_id: input should be greater than or equal to 1"),
    ("image id past 64 bits", {"image_id": 2**70, "commands": ADJUST}, "image_id: input should be less than"),
    ("no image id", {"commands": ADJUST}, "image_id is missing"),
    ("commands as text", {"image_id": 1, "commands": '[{"command": "adjust"}]'}, "commands: input should be a valid list"),
    ("command as a list", {"image_id": 1, "commands": [["adjust"]]}, "commands.0: input should be a valid dictionary"),
    ("no commands", {"image_id": 1, "commands": []}, "commands: list should have at least 1 item"),
    ("huge command list", {"image_id": 1, "commands": ADJUST * 100_000}, f"at most {MAX_EDIT_COMMANDS} items"),
    ("just over the cap", {"image_id": 1, "commands": ADJUST * (MAX_EDIT_COMMANDS + 1)},
     f"at most {MAX_EDIT_COMMANDS} items"),
    ("text history id", {"image_id": 1, "commands": ADJUST, "history_id": "3"}, "history_id: input should be"),
    ("zero parent step", {"image_id": 1, "commands": ADJUST, "parent_step_id": 0}, "parent_step_id: input should be"),
    ("settings as a list", {"image_id": 1, "commands": ADJUST, "user_settings": [1]},
     "user_settings: input should be a valid dictionary"),
    ("unknown setting", {"image_id": 1, "commands": ADJUST, "user_settings": {"model_path": "/etc/shadow"}},
     "user_settings: there is no setting called 'model_path'"),
    ("setting out of range", {"image_id": 1, "commands": ADJUST, "user_settings": {"steps": 10**9}},
     "user_settings: steps must be between 1 and 150"),
    ("setting of the wrong type", {"image_id": 1, "commands": ADJUST, "user_settings": {"controlnet": "yes"}},
     "is on or off"),
    ("a LoRA given as a path", {"image_id": 1, "commands": ADJUST,
                                "user_settings": {"loras": [{"name": "../../x.safetensors", "weight": 1}]}},
     "named by its .safetensors file name"),
    ("payload not an object", [1, 2], "it must be a JSON object, not list"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("payload", "problem"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_the_edit_model_refuses_a_hostile_payload_with_a_sentence(payload: dict, problem: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        check_payload("edit", payload)
    assert_sentence(str(info.value))
    assert problem in str(info.value)


def test_a_valid_payload_is_kept_as_given() -> None:
    payload = {"image_id": 3, "commands": ADJUST, "history_id": 4, "parent_step_id": 5, "selection_key": KEY,
               "user_settings": {"steps": 20, "max_side": 64, "editor_backend": "classical"}}
    assert check_payload("edit", payload) == payload


@pytest.mark.parametrize(("payload", "problem"), [h[1:] for h in HOSTILE if isinstance(h[1], dict)][:12],
                         ids=[h[0] for h in HOSTILE if isinstance(h[1], dict)][:12])
def test_the_queue_refuses_it_and_queues_nothing(services: Services, payload: dict, problem: str) -> None:
    with pytest.raises(InvalidPayload, match="payload is not valid") as info:
        services.queue.enqueue("edit", payload)
    assert problem in str(info.value)
    assert services.queue.list() == []


@pytest.mark.parametrize(("change", "problem"), [
    ({"selection_key": "../../etc/passwd"}, "selection_key: it must be a blob key"),
    ({"selection_key": "/dev/zero"}, "selection_key: it must be a blob key"),
    ({"commands": ADJUST * 1000}, f"at most {MAX_EDIT_COMMANDS} items"),
    ({"user_settings": {"steps": "many"}}, "steps must be a number"),
    ({"history_id": "1"}, "history_id: input should be a valid integer"),
])
def test_submit_edit_refuses_with_a_sentence_and_queues_nothing(services: Services, change: dict,
                                                                 problem: str) -> None:
    stored = store_array(services, _photo())
    request = EditRequest(**{"image_id": stored.id, "commands": ADJUST, **change})
    with pytest.raises(InvalidEdit) as info:
        submit_edit(services, request)
    assert_sentence(str(info.value))
    assert problem in str(info.value)
    assert services.queue.list() == []


def test_jobs_submit_refuses_a_path_as_selection(services: Services, worker_env: dict[str, str]) -> None:
    payload = '{"image_id": 1, "commands": [{"command": "adjust", "paras": ["brightness", 0.3, []]}], ' \
              '"selection_key": "../../etc/passwd"}'
    result = CliRunner().invoke(cli, ["jobs", "submit", "edit", "--payload", payload], env=worker_env,
                                catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "selection_key: it must be a blob key" in result.stderr
    assert services.queue.list() == []


# ---------------------------------------------------------------------------- refused again in the handler


def _force_payload(services: Services, job_id: int, payload: dict) -> None:
    """Write a payload straight into the row, as an older version or another program might have."""
    with services.database.write() as conn:
        conn.execute(sa.update(jobs_t).where(jobs_t.c.id == job_id).values(payload=payload))


def _images(services: Services) -> int:
    with services.database.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(ImageRow)).scalar_one()


@pytest.mark.parametrize(("forced", "problem"), [
    ({"selection_key": "/etc/passwd"}, "selection_key: it must be a blob key"),
    ({"selection_key": "../" * 20 + "dev/zero"}, "selection_key: it must be a blob key"),
    ({"user_id": 2}, "unknown key 'user_id'"),
    ({"commands": ADJUST * 500}, f"at most {MAX_EDIT_COMMANDS} items"),
])
def test_a_row_with_a_forbidden_payload_fails_at_once_and_stores_nothing(services: Services, forced: dict,
                                                                         problem: str) -> None:
    stored = store_array(services, _photo())
    job_id = submit_edit(services, EditRequest(image_id=stored.id, commands=ADJUST))
    _force_payload(services, job_id, {**services.queue.get(job_id).payload, **forced})
    with running_worker(services, lanes=["interactive"]):
        job = services.queue.wait(job_id, timeout_s=30)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert problem in job.error_message and job.error_message.endswith(".")
    assert services.queue.outputs(job_id) == [] and _images(services) == 1


def test_a_well_formed_key_is_read_from_the_blob_store_only(services: Services) -> None:
    stored = store_array(services, _photo())
    job_id = submit_edit(services, EditRequest(image_id=stored.id, commands=ADJUST, selection_key="0" * 64))
    with running_worker(services, lanes=["interactive"]):
        job = services.queue.wait(job_id, timeout_s=30)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.error_message == "The selection cannot be used: its mask is no longer stored."


def test_the_result_is_made_by_the_jobs_owner(services: Services) -> None:
    stored = store_array(services, _photo())
    history = start_history(services, stored.id, title="owned")
    request = EditRequest(image_id=stored.id, commands=ADJUST, history_id=history.history_id,
                          parent_step_id=history.root_step_id)
    assert "user_id" not in request.to_payload(), "a payload never says who asked"
    job_id = submit_edit(services, request)
    with running_worker(services, lanes=["interactive"]):
        job = services.queue.wait(job_id, timeout_s=30)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    assert get_step(services, job.result["step_id"]).created_by == job.owner_id
    assert get_image(services, job.result["image_id"]).id != stored.id


def test_an_older_rows_request_can_be_asked_again() -> None:
    """Rows queued before the payload stopped naming its user still carry ``user_id``; a re-run leaves it out."""
    request = EditRequest.from_payload({"image_id": 1, "commands": ADJUST, "user_id": 1, "selection_key": None})
    assert (request.image_id, request.commands, request.selection_key) == (1, ADJUST, None)
    with pytest.raises(InvalidEdit, match="selection_key: it must be a blob key"):
        EditRequest.from_payload({"image_id": 1, "commands": ADJUST, "selection_key": "/etc/passwd"})
