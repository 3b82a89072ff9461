"""Exceptions of the queue and of job handlers. Each carries its data, not just a message."""

from __future__ import annotations


class JobError(Exception):
    """Base class of the queue's own errors."""


class JobNotFound(JobError, LookupError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"There is no job {job_id}.")
        self.job_id = job_id


class InvalidJobRequest(JobError, ValueError):
    """An enqueue or retry that the queue refuses (unknown lane, bad priority, wrong status ...)."""

    def __init__(self, message: str, **data: object) -> None:
        super().__init__(message)
        self.data = data


class RetryableError(Exception):
    """Raised by a handler for a failure that may pass on its own (a busy GPU, a flaky network)."""


class PermanentError(Exception):
    """Raised by a handler for a failure that another attempt cannot fix (bad input, missing model)."""


class UnknownJobKind(PermanentError):
    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(f"No handler for job kind {kind!r}; this worker knows {', '.join(sorted(known))}.")
        self.kind = kind
        self.known = known


class JobInterrupted(BaseException):
    """Raised inside a handler to stop it early. BaseException so a handler's `except Exception` cannot swallow it."""


class JobCancelled(JobInterrupted):
    """Someone cancelled the running job."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"Job {job_id} was cancelled.")
        self.job_id = job_id


class WorkerStopping(JobInterrupted):
    """The worker is shutting down and hands the job back to the queue."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"The worker is stopping; job {job_id} goes back to the queue.")
        self.job_id = job_id


class LeaseLost(JobInterrupted):
    """This worker no longer holds the job (its lease expired and another worker may run it)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"This worker lost its lease on job {job_id}.")
        self.job_id = job_id
