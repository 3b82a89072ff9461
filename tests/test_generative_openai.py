"""The OpenAI image-edit fallback against a local HTTP server that speaks the images edit endpoint."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.generative.compositing import feathered_alpha
from core.masks import mask_to_png
from core.settings import Settings
from db.migrate import upgrade
from jobs.edits import EditRequest, submit_edit
from jobs.images import image_rgb, store_array
from jobs.queue import JobStatus
from jobs.services import Services
from tests.conftest import running_worker
from tests.diffusion_support import photo


class ImagesEditServer(BaseHTTPRequestHandler):
    """POST /v1/images/edits (multipart): records the request, answers a solid green image as b64_json."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
        fields = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                  for part in message.iter_parts()}
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **fields})
        with Image.open(io.BytesIO(fields["image"])) as image:
            size = image.size
        answer = io.BytesIO()
        Image.new("RGB", size, (0, 255, 0)).save(answer, format="PNG")
        payload = json.dumps({"created": 0, "data": [{"b64_json": base64.b64encode(answer.getvalue()).decode()}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_url() -> Iterator[str]:
    ImagesEditServer.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImagesEditServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def services(tmp_path: Path, api_url: str) -> Iterator[Services]:
    from core.settings import load_settings

    settings: Settings = load_settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'chatedit.db'}", worker_poll_seconds=0.1,
        worker_heartbeat_seconds=0.2, openai_image_model="gpt-image-1", openai_api_key="sk-test",
        openai_base_url=api_url, openai_max_retries=0,
    )
    svc = Services.from_settings(settings)
    upgrade(svc.database)
    yield svc
    svc.close()


def test_change_without_a_local_model_goes_to_the_images_edit_endpoint(services: Services) -> None:
    base = photo()
    stored = store_array(services, base)
    mask = np.zeros(base.shape[:2], dtype=bool)
    mask[10:30, 20:44] = True
    job_id = submit_edit(services, EditRequest(
        image_id=stored.id, selection_key=services.blobs.put(mask_to_png(mask)), user_settings={"openai_size": 256},
        commands=[{"command": "change", "paras": [["Selection"], "a green shirt"]}]))
    with running_worker(services, lanes=["interactive", "gpu"]):
        job = services.queue.wait(job_id, timeout_s=60)
    assert job.status is JobStatus.SUCCEEDED, job.error_message

    [request] = ImagesEditServer.requests
    assert request["path"] == "/v1/images/edits" and request["auth"] == "Bearer sk-test"
    assert request["model"] == b"gpt-image-1" and request["prompt"] == b"a green shirt"
    with Image.open(io.BytesIO(request["mask"])) as sent_mask:
        assert sent_mask.mode == "RGBA" and sent_mask.size == (256, 256)
        alpha = np.asarray(sent_mask)[..., 3]
    assert alpha[256 * 20 // 48, 256 * 32 // 64] == 0 and alpha[2, 2] == 255  # transparent = repaint

    edited = image_rgb(services, job.result["image_id"])
    outside = feathered_alpha(mask, 4) == 0
    assert np.array_equal(edited[outside], base[outside])
    assert (edited[12:28, 22:42] == (0, 255, 0)).all()
    assert job.result["generation"][0]["backend"] == "openai"


def test_an_api_failure_is_a_sentence(services: Services) -> None:
    services.settings.openai_base_url = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    stored = store_array(services, photo())
    job_id = submit_edit(services, EditRequest(image_id=stored.id,
                                               commands=[{"command": "instruct", "paras": ["make it snow"]}]))
    with running_worker(services, lanes=["gpu"]):
        job = services.queue.wait(job_id, timeout_s=60)
    assert job.status is JobStatus.FAILED
    assert job.error_message.startswith("'instruct' could not run: The OpenAI image edit failed")
