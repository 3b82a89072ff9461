"""The ``noop`` kind: does nothing useful, on purpose, for tests, benchmarks and checking a deployment.

It reads no file and writes nothing but its result, so anyone allowed to submit a job
can run it. Payload (:class:`NoopPayload`, all optional): ``sleep_s`` (work that reports
progress and honours cancel; with ``sleep_attempts`` only while the attempt number is at
most this), ``fail`` ("retryable" or "permanent") with ``fail_attempts`` (fail only while
the attempt number is at most this), ``echo`` (returned in the result).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue

from jobs.context import JobContext
from jobs.errors import PermanentError, RetryableError
from jobs.registry import Payload

#: Longest a noop may pretend to work: long enough for shutdown and cancel tests, short enough not to hold a slot.
MAX_SLEEP_S = 600.0


class NoopPayload(Payload):
    sleep_s: Annotated[float, Field(ge=0, le=MAX_SLEEP_S, allow_inf_nan=False)] = 0.0
    sleep_attempts: Annotated[int, Field(ge=0, le=1000)] | None = None
    fail: Literal["retryable", "permanent"] | None = None
    fail_attempts: Annotated[int, Field(ge=0, le=1000)] | None = None
    echo: JsonValue = None


def handle(ctx: JobContext) -> dict[str, Any]:
    p = NoopPayload.of(ctx)
    if p.sleep_s > 0 and (p.sleep_attempts is None or ctx.attempt <= p.sleep_attempts):
        ticks = max(1, int(p.sleep_s / 0.05))
        for i in range(ticks):
            ctx.progress(i / ticks, f"working {i + 1}/{ticks}")
            time.sleep(p.sleep_s / ticks)
        ctx.progress(1.0, "done")
    if p.fail and (p.fail_attempts is None or ctx.attempt <= p.fail_attempts):
        if p.fail == "retryable":
            raise RetryableError(f"noop failed on attempt {ctx.attempt}, as asked")
        raise PermanentError(f"noop failed on attempt {ctx.attempt}, as asked")
    return {"echo": p.echo, "worker": ctx.worker_id, "attempt": ctx.attempt}
