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


class TooManyQueuedJobs(InvalidJobRequest):
    """An enqueue that would leave one person with more queued jobs than CHATEDIT_MAX_QUEUED_JOBS_PER_PERSON allows.

    Refused whole: nothing of the request is queued, so a retry later asks for exactly the same.
    """

    def __init__(self, owner_id: int, queued: int, limit: int, adding: int = 1) -> None:
        setting = "CHATEDIT_MAX_QUEUED_JOBS_PER_PERSON"
        if adding > 1 and queued == 0:
            message = (f"These {adding} jobs are more than the {limit} one person may queue at once ({setting}); "
                       "queue fewer at a time.")
        elif adding > 1:
            message = (f"You already have {_jobs(queued)} waiting, and these {adding} would make {queued + adding}, "
                       f"more than the {limit} one person may queue ({setting}); wait for some to finish or cancel "
                       "them, or queue fewer at a time.")
        else:
            most = "the most" if queued == limit else f"more than the {limit}"
            message = (f"You already have {_jobs(queued)} waiting, {most} one person may queue ({setting}); "
                       "wait for some to finish or cancel them.")
        super().__init__(message, owner_id=owner_id, queued=queued, limit=limit, adding=adding)
        self.owner_id = owner_id
        self.queued = queued
        self.limit = limit
        self.adding = adding


def _jobs(count: int) -> str:
    return "1 job" if count == 1 else f"{count} jobs"


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
