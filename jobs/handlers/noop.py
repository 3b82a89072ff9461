"""The ``noop`` kind: does nothing useful, on purpose, for tests, benchmarks and checking a deployment.

Payload (all optional): ``sleep_s`` (work that reports progress and honours cancel; with
``sleep_attempts`` only while the attempt number is at most this),
``output`` (text saved as output "output" before the work, as a real handler stores
its result), ``mark`` (also save a uniquely named output per execution, so a test can
count how often the job really ran), ``fail`` ("retryable" or "permanent") with
``fail_attempts`` (fail only while the attempt number is at most this), ``echo``
(returned in the result).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from jobs.context import JobContext
from jobs.errors import PermanentError, RetryableError


def handle(ctx: JobContext) -> dict[str, Any]:
    p = ctx.payload
    if "output" in p:
        ctx.save_output("output", str(p["output"]).encode())
    if p.get("mark"):
        ctx.save_output(f"execution-{uuid.uuid4().hex}", f"{ctx.worker_id} attempt {ctx.attempt}".encode())
    sleep_s = float(p.get("sleep_s", 0))
    if sleep_s > 0 and ctx.attempt <= int(p.get("sleep_attempts", 1_000_000)):
        ticks = max(1, int(sleep_s / 0.05))
        for i in range(ticks):
            ctx.progress(i / ticks, f"working {i + 1}/{ticks}")
            time.sleep(sleep_s / ticks)
        ctx.progress(1.0, "done")
    fail = p.get("fail")
    if fail and ctx.attempt <= int(p.get("fail_attempts", 1_000_000)):
        if fail == "retryable":
            raise RetryableError(f"noop failed on attempt {ctx.attempt}, as asked")
        raise PermanentError(f"noop failed on attempt {ctx.attempt}, as asked")
    return {"echo": p.get("echo"), "worker": ctx.worker_id, "attempt": ctx.attempt}
