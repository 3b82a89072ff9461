"""A local OpenAI-compatible server for tests: ``POST /v1/chat/completions``, plain and streamed (SSE).

It speaks the wire format of the real API (``chat.completion`` objects, ``chat.completion.chunk``
events ending in ``data: [DONE]``, ``{"error": {...}}`` bodies with the status codes the
SDK maps to its exceptions), so the planner under test runs through the real ``openai``
SDK; ``tests/test_planner_openai.py`` holds the fake to the protocol by parsing its
answers with the SDK in strict response validation mode.

Replies are scripted (:class:`Reply`, consumed in order, then :attr:`FakeOpenAIServer.default`)
or computed (:attr:`FakeOpenAIServer.responder`); every request is recorded.

Like OpenAI, it refuses (HTTP 400) a ``response_format`` whose strict JSON Schema leaves
the subset strict Structured Outputs support (:func:`strict_schema_problems`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

# OpenAI's strict Structured Outputs, "Supported schemas" in the Structured Outputs guide
# (platform.openai.com/docs/guides/structured-outputs#supported-schemas): the types, the
# keywords per type, an object at the root (not anyOf), every object closed
# (additionalProperties false) with all its properties required, and size limits. The
# limits here are the first published ones (100 properties, 5 levels, 500 enum values,
# 15,000 characters), stricter than the raised ones of 2025 (5000, 10, 1000, 120,000),
# so a schema that passes fits every deployment of either age.
STRICT_TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}
STRICT_COMMON = {"type", "description", "enum", "anyOf", "$ref", "$defs"}
STRICT_BY_TYPE = {
    "string": {"pattern", "format"},
    "number": {"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"},
    "integer": {"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"},
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems", "maxItems"},
    "boolean": set(),
    "null": set(),
}
STRICT_FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
STRICT_MAX_PROPERTIES = 100
STRICT_MAX_NESTING = 5
STRICT_MAX_ENUM_VALUES = 500
STRICT_MAX_STRING_CHARS = 15_000
STRICT_LARGE_ENUM = 250
STRICT_MAX_LARGE_ENUM_CHARS = 7_500


def strict_schema_problems(schema: Any) -> list[str]:
    """Why OpenAI's strict mode would refuse ``schema``, one sentence each; empty when it accepts it."""
    problems: list[str] = []
    totals = {"properties": 0, "enum_values": 0, "chars": 0, "depth": 0}

    def walk(node: Any, where: str, depth: int) -> None:
        if not isinstance(node, dict):
            problems.append(f"{where}: a schema must be an object, not {node!r}")
            return
        types = node.get("type")
        type_list = [types] if isinstance(types, str) else types if isinstance(types, list) else []
        if types is not None and (not type_list or set(type_list) - STRICT_TYPES):
            problems.append(f"{where}: unsupported type {types!r}")
        if types is None and "anyOf" not in node and "$ref" not in node:
            problems.append(f"{where}: no type")
        allowed = STRICT_COMMON.union(*(STRICT_BY_TYPE.get(t, set()) for t in type_list))
        unsupported = sorted(set(node) - allowed)
        if unsupported:
            problems.append(f"{where}: unsupported keyword(s) {', '.join(unsupported)}")
        containers = {"object", "array"} & set(type_list)
        if containers:
            totals["depth"] = max(totals["depth"], depth + 1)
        if "format" in node and node["format"] not in STRICT_FORMATS:
            problems.append(f"{where}: unsupported format {node['format']!r}")
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if key in node and (isinstance(node[key], bool) or not isinstance(node[key], int | float)):
                problems.append(f"{where}: {key} must be a number")
        for key in ("minItems", "maxItems"):
            if key in node and (isinstance(node[key], bool) or not isinstance(node[key], int) or node[key] < 0):
                problems.append(f"{where}: {key} must be a non-negative integer")
        if "enum" in node:
            values = node["enum"]
            if not isinstance(values, list) or not values:
                problems.append(f"{where}: enum must be a non-empty list")
            else:
                totals["enum_values"] += len(values)
                chars = sum(len(v) for v in values if isinstance(v, str))
                totals["chars"] += chars
                if len(values) > STRICT_LARGE_ENUM and chars > STRICT_MAX_LARGE_ENUM_CHARS:
                    problems.append(f"{where}: an enum of {len(values)} values has {chars} characters")
        if "object" in type_list:
            properties = node.get("properties")
            if not isinstance(properties, dict):
                problems.append(f"{where}: an object needs properties")
                properties = {}
            if node.get("additionalProperties") is not False:
                problems.append(f"{where}: additionalProperties must be false")
            required = node.get("required")
            if not isinstance(required, list) or sorted(required) != sorted(properties) \
                    or len(set(required)) != len(required):
                problems.append(f"{where}: required must list every property, got {required!r}")
            totals["properties"] += len(properties)
            totals["chars"] += sum(len(name) for name in properties)
            for name, child in properties.items():
                walk(child, f"{where}.{name}", depth + 1)
        if "array" in type_list:
            if "items" not in node:
                problems.append(f"{where}: an array needs items")
            else:
                walk(node["items"], f"{where}[]", depth + 1)
        if "anyOf" in node:
            branches = node["anyOf"]
            if not isinstance(branches, list) or not branches:
                problems.append(f"{where}: anyOf must be a non-empty list")
            else:
                for i, branch in enumerate(branches):
                    walk(branch, f"{where}|{i}", depth)
        for name, child in (node.get("$defs") or {}).items():
            totals["chars"] += len(name)
            walk(child, f"$defs.{name}", 0)

    if not isinstance(schema, dict) or schema.get("type") != "object" or "anyOf" in schema:
        problems.append("the root must be an object (type object, not anyOf)")
    walk(schema, "schema", 0)
    if totals["properties"] > STRICT_MAX_PROPERTIES:
        problems.append(f"{totals['properties']} object properties exceed the limit of {STRICT_MAX_PROPERTIES}")
    if totals["depth"] > STRICT_MAX_NESTING:
        problems.append(f"{totals['depth']} levels of nesting exceed the limit of {STRICT_MAX_NESTING}")
    if totals["enum_values"] > STRICT_MAX_ENUM_VALUES:
        problems.append(f"{totals['enum_values']} enum values exceed the limit of {STRICT_MAX_ENUM_VALUES}")
    if totals["chars"] > STRICT_MAX_STRING_CHARS:
        problems.append(f"{totals['chars']} characters of names and enum values exceed {STRICT_MAX_STRING_CHARS}")
    return problems


@dataclass
class Reply:
    """One scripted answer: an assistant message (``content``), or an HTTP error (``status`` ≥ 400)."""

    content: str = ""
    status: int = 200
    error_message: str = "error"
    error_type: str = "invalid_request_error"
    headers: dict[str, str] = field(default_factory=dict)
    refusal: str | None = None
    finish_reason: str = "stop"
    chunk_chars: int = 7


@dataclass
class Received:
    """A request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format")


def rate_limited(retry_after_ms: int = 1) -> Reply:
    """A 429 as OpenAI sends it; ``retry-after-ms`` keeps the SDK's backoff short in tests."""
    return Reply(status=429, error_type="requests", error_message="Rate limit reached for requests.",
                 headers={"retry-after-ms": str(retry_after_ms)})


def server_error(status: int = 503, retry_after_ms: int = 1) -> Reply:
    return Reply(status=status, error_type="server_error", error_message="The server is overloaded.",
                 headers={"retry-after-ms": str(retry_after_ms)})


class _QuietServer(ThreadingHTTPServer):
    """Handler threads die with the test; a client that hung up (a timeout test) is not an error here."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeOpenAIServer:
    """Serve on ``127.0.0.1`` (a free port) in a daemon thread; use as a context manager."""

    model = "fake-model"

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.default = Reply(content=json.dumps({"reply": "Nothing to do.", "commands": []}))
        self.responder: Callable[[Received], Reply] | None = None
        #: Answer requests that carry ``response_format`` with a 400, as servers without structured output do.
        self.rejects_response_format = False
        #: Answer a strict ``json_schema`` outside OpenAI's supported subset with a 400, as OpenAI does.
        self.enforces_strict_schema = True
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next_reply(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            if self.rejects_response_format and received.response_format is not None:
                return Reply(status=400, error_message="response_format is not supported by this server.")
            refusal = self._schema_refusal(received.response_format)
            if refusal is not None:
                return refusal
            if self.script:
                return self.script.pop(0)
        return self.responder(received) if self.responder else self.default

    def _schema_refusal(self, response_format: Any) -> Reply | None:
        if not self.enforces_strict_schema or not isinstance(response_format, dict) \
                or response_format.get("type") != "json_schema":
            return None
        spec = response_format.get("json_schema") or {}
        if not spec.get("strict"):
            return None
        problems = strict_schema_problems(spec.get("schema"))
        if not problems:
            return None
        return Reply(status=400, error_message=f"Invalid schema for response_format '{spec.get('name')}': "
                                               + "; ".join(problems[:5]) + ".")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error",
                                               "param": None, "code": "not_found"}})
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._json(400, {"error": {"message": "Invalid JSON body.", "type": "invalid_request_error",
                                               "param": None, "code": None}})
                    return
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                reply = server._next_reply(received)
                if reply.status >= 400:
                    self._json(reply.status, {"error": {"message": reply.error_message, "type": reply.error_type,
                                                        "param": None, "code": None}}, reply.headers)
                elif body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._json(200, completion(body.get("model", server.model), reply))

            def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                for event in chunks(body.get("model", server.model), reply, include_usage=include_usage):
                    data = f"data: {event}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        return Handler


def _usage(reply: Reply) -> dict[str, int]:
    completion_tokens = max(1, len(reply.content) // 4)
    return {"prompt_tokens": 10, "completion_tokens": completion_tokens, "total_tokens": 10 + completion_tokens}


def completion(model: str, reply: Reply) -> dict[str, Any]:
    """A ``chat.completion`` object as the API returns it."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": None if reply.refusal else reply.content,
                        "refusal": reply.refusal},
            "logprobs": None,
            "finish_reason": reply.finish_reason,
        }],
        "usage": _usage(reply),
    }


def chunks(model: str, reply: Reply, *, include_usage: bool = False) -> Iterator[str]:
    """The SSE ``data:`` payloads of a streamed answer: role, content pieces, finish, (usage), ``[DONE]``."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
        return json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                           "model": model, "system_fingerprint": "fp_fake",
                           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                           **extra})

    yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
    text, key = (reply.refusal, "refusal") if reply.refusal else (reply.content, "content")
    for start in range(0, len(text), reply.chunk_chars):
        yield chunk({key: text[start:start + reply.chunk_chars]}, None)
    yield chunk({}, reply.finish_reason)
    if include_usage:
        yield json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model,
                          "system_fingerprint": "fp_fake", "choices": [], "usage": _usage(reply)})
    yield "[DONE]"


@contextmanager
def fake_openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server
