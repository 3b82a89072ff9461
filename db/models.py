"""SQLModel tables of ChatEdit.

Image bytes never live in these rows: they are blobs addressed by sha256 (see
``db.blobs``), so an image row is a record about bytes, not the bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from db.types import BigIntId, JSONType, UTCDateTime, utcnow

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_JOB_STATUSES = ("succeeded", "failed", "cancelled")
JOB_LANES = ("interactive", "gpu", "batch")
CHAT_ROLES = ("system", "user", "assistant")

#: Created by the first migration: the admin everything acts as while sign-in is off.
LOCAL_USER_ID = 1
LOCAL_USER_NAME = "local"
#: What a person may do is decided by their role (``jobs.services.permissions`` maps each to its permissions).
USER_ROLES = ("admin", "editor", "reviewer", "viewer")
#: Who may read a history: ``private`` its owner (and admins), ``team`` everyone who may read the team's.
VISIBILITIES = ("private", "team")
#: A reviewer's decision on a step; a step's review state is derived from these rows (``jobs.services.reviews``).
REVIEW_DECISIONS = ("approve", "reject", "request_changes")


def _created_at() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class User(SQLModel, table=True):
    """A person (or the local user). Accounts are disabled, never deleted: the audit log and histories name them."""

    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint(f"role IN ({_quoted(USER_ROLES)})", name="ck_users_role"),
        # Unique indexes rather than constraints: SQLite adds them to an existing table without rebuilding it.
        sa.Index("ix_users_email", "email", unique=True),
        sa.Index("ix_users_oidc", "oidc_issuer", "oidc_subject", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, nullable=False)
    display_name: str = Field(default="", max_length=128)
    email: str | None = Field(default=None, max_length=254)
    role: str = Field(default="editor", max_length=16, nullable=False,
                      sa_column_kwargs={"server_default": "editor"})
    #: A disabled account may do nothing and its sessions end; its rows stay.
    active: bool = Field(default=True, nullable=False, sa_column_kwargs={"server_default": sa.true()})
    #: An Argon2 hash (pwdlib); None: the account has no password (the local user, or sign-in by OIDC only).
    password_hash: str | None = Field(default=None, max_length=255)
    #: The OpenID provider's (issuer, subject) of a person who signs in through it; unique together.
    oidc_issuer: str | None = Field(default=None, max_length=255)
    oidc_subject: str | None = Field(default=None, max_length=255)
    last_sign_in_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: The person's editing defaults (Settings page), checked by ``jobs.user_settings``; None: none set.
    preferences: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    created_at: datetime = _created_at()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class UserSession(SQLModel, table=True):
    """A signed-in browser. Only the sha256 of its token is stored: a copy of the database signs nobody in."""

    __tablename__ = "sessions"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", nullable=False, index=True)
    token_hash: str = Field(max_length=64, unique=True, nullable=False)
    created_at: datetime = _created_at()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_seen_at: datetime = _created_at()


class AuditEntry(SQLModel, table=True):
    """Who did what to which object, and when. Append-only: a database trigger refuses UPDATE and DELETE."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_object", "object_type", "object_id"),)

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    at: datetime = _created_at()
    #: None: nobody known (a failed sign-in under a name that may not exist).
    actor_id: int | None = Field(default=None, foreign_key="users.id")
    action: str = Field(max_length=64, nullable=False)
    object_type: str = Field(max_length=64, nullable=False)
    #: Text, so that an object named rather than numbered (a user name at sign-in) fits too.
    object_id: str | None = Field(default=None, max_length=128)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)


class Image(SQLModel, table=True):
    __tablename__ = "images"

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64, unique=True, nullable=False)
    width: int = Field(nullable=False)
    height: int = Field(nullable=False)
    format: str = Field(max_length=16, nullable=False)
    byte_size: int = Field(nullable=False)
    blob_key: str = Field(max_length=64, nullable=False)
    #: Downscaled copies for the browser (at most 1,280 px and 384 px on the long side), made once on
    #: first use: the browser never receives the full-size image.
    preview_key: str | None = Field(default=None, max_length=64)
    thumbnail_key: str | None = Field(default=None, max_length=64)
    created_by: int = Field(foreign_key="users.id", nullable=False)
    created_at: datetime = _created_at()


class Segmentation(SQLModel, table=True):
    """A label map cached per (image, model): the same image is never segmented twice."""

    __tablename__ = "segmentations"
    __table_args__ = (sa.UniqueConstraint("image_id", "model_id", name="uq_segmentations_image_model"),)

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id", nullable=False, index=True)
    model_id: str = Field(max_length=255, nullable=False)
    label_map_key: str = Field(max_length=64, nullable=False)
    #: [{"name": "Hair", "id": 2, "share": 0.12}, ...] for labels present in the image.
    labels: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    created_at: datetime = _created_at()


class History(SQLModel, table=True):
    __tablename__ = "histories"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(default="", max_length=200)
    owner_id: int = Field(foreign_key="users.id", nullable=False, index=True)
    #: The step the editor continues from ("Set as base", "Undo"); None: the root step.
    #: No foreign key: histories and steps would reference each other in a cycle.
    base_step_id: int | None = Field(default=None)
    #: The newest edit job submitted for this history: its status is the gallery's "last status".
    last_job_id: int | None = Field(default=None, sa_type=BigIntId)
    #: The person's current selection (a mask PNG blob at the base image's size); None: nothing selected.
    selection_key: str | None = Field(default=None, max_length=64)
    #: Set when the history is deleted (soft: the gallery hides it and offers Undo); None: not deleted.
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    visibility: str = Field(default="private", max_length=16, nullable=False,
                            sa_column_kwargs={"server_default": "private"})
    #: Counts every change to the history (a step, the base, title, visibility): a page that acts on
    #: version N is refused once it is N+1 (optimistic check), and a page showing N refreshes.
    version: int = Field(default=0, nullable=False, sa_column_kwargs={"server_default": "0"})
    #: Who made the newest change, when, and what it was ("base", "step", "title", "visibility", ...).
    changed_by: int | None = Field(default=None, foreign_key="users.id")
    changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    change: str | None = Field(default=None, max_length=32)
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()

    __table_args__ = (sa.CheckConstraint(f"visibility IN ({_quoted(VISIBILITIES)})", name="ck_histories_visibility"),)


class Job(SQLModel, table=True):
    """One unit of work for a worker. Only ``jobs.queue`` reads or writes these rows."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_quoted(JOB_STATUSES)})", name="ck_jobs_status"),
        sa.CheckConstraint(f"lane IN ({_quoted(JOB_LANES)})", name="ck_jobs_lane"),
        sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="ck_jobs_attempts"),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name="ck_jobs_progress"),
        # The claim: the next queued job of a lane, by priority, then fair rank, then age.
        sa.Index(
            "ix_jobs_claim",
            "lane",
            sa.text("priority DESC"),
            "fair_rank",
            "id",
            sqlite_where=sa.text("status = 'queued'"),
            postgresql_where=sa.text("status = 'queued'"),
        ),
        # Fair ranks at enqueue: the owner's last queued rank and the lane's lowest.
        sa.Index(
            "ix_jobs_owner_rank",
            "owner_id",
            "lane",
            "fair_rank",
            sqlite_where=sa.text("status = 'queued'"),
            postgresql_where=sa.text("status = 'queued'"),
        ),
        sa.Index(
            "ix_jobs_lane_rank",
            "lane",
            "fair_rank",
            sqlite_where=sa.text("status = 'queued'"),
            postgresql_where=sa.text("status = 'queued'"),
        ),
        # The reaper: running jobs whose lease ran out.
        sa.Index(
            "ix_jobs_lease",
            "lease_expires_at",
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        ),
        sa.Index("ix_jobs_status_created", "status", "created_at"),
    )

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    kind: str = Field(max_length=64, nullable=False)
    lane: str = Field(max_length=16, nullable=False)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    priority: int = Field(default=0, nullable=False)
    owner_id: int = Field(foreign_key="users.id", nullable=False)
    status: str = Field(default="queued", max_length=16, nullable=False)
    attempts: int = Field(default=0, nullable=False)
    max_attempts: int = Field(default=3, nullable=False)
    run_after: datetime = _created_at()
    #: Round-robin across owners: an owner's jobs get consecutive ranks, starting no
    #: lower than the lane's lowest queued rank, so a newcomer's job is not behind
    #: another person's backlog.
    fair_rank: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)
    lease_owner: str | None = Field(default=None, max_length=128)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    heartbeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_requested: bool = Field(default=False, nullable=False)
    progress: float = Field(default=0.0, nullable=False)
    progress_message: str | None = Field(default=None, max_length=500)
    result: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    error_type: str | None = Field(default=None, max_length=200)
    error_message: str | None = Field(default=None, sa_type=sa.Text)
    error_traceback: str | None = Field(default=None, sa_type=sa.Text)
    retry_of: int | None = Field(default=None, sa_type=BigIntId, foreign_key="jobs.id")
    created_at: datetime = _created_at()
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = _created_at()


class JobOutput(SQLModel, table=True):
    """A named output of a job. Keyed by (job, name) so a re-run job writes it once."""

    __tablename__ = "job_outputs"
    __table_args__ = (sa.UniqueConstraint("job_id", "name", name="uq_job_outputs_job_name"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(sa_type=BigIntId, foreign_key="jobs.id", nullable=False, index=True)
    name: str = Field(max_length=200, nullable=False)
    blob_key: str = Field(max_length=64, nullable=False)
    byte_size: int = Field(nullable=False)
    created_at: datetime = _created_at()


class Step(SQLModel, table=True):
    """A node of a history's tree: the image after running some commands on its parent."""

    __tablename__ = "steps"

    id: int | None = Field(default=None, primary_key=True)
    history_id: int = Field(foreign_key="histories.id", nullable=False, index=True)
    parent_id: int | None = Field(default=None, foreign_key="steps.id", index=True)
    image_id: int | None = Field(default=None, foreign_key="images.id")
    commands: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    #: Unique: a job that runs twice (at-least-once delivery) still makes one step.
    job_id: int | None = Field(default=None, sa_type=BigIntId, foreign_key="jobs.id", unique=True)
    created_by: int = Field(foreign_key="users.id", nullable=False)
    created_at: datetime = _created_at()


class ChatMessage(SQLModel, table=True):
    __tablename__ = "chat_messages"
    __table_args__ = (sa.CheckConstraint(f"role IN ({_quoted(CHAT_ROLES)})", name="ck_chat_messages_role"),)

    id: int | None = Field(default=None, primary_key=True)
    history_id: int = Field(foreign_key="histories.id", nullable=False, index=True)
    role: str = Field(max_length=16, nullable=False)
    content: str = Field(sa_type=sa.Text, nullable=False)
    #: Commands extracted from an assistant reply, with validation outcome.
    commands: list[dict[str, Any]] | None = Field(default=None, sa_type=JSONType)
    author_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = _created_at()


class WorkerRecord(SQLModel, table=True):
    """A worker process as it last reported itself (for the Status page and the reaper)."""

    __tablename__ = "workers"

    id: str = Field(max_length=128, primary_key=True)
    host: str = Field(max_length=255, nullable=False)
    pid: int = Field(nullable=False)
    lanes: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    concurrency: int = Field(default=1, nullable=False)
    gpu_name: str | None = Field(default=None, max_length=255)
    current_jobs: list[int] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    started_at: datetime = _created_at()
    heartbeat_at: datetime = _created_at()
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Blob(SQLModel, table=True):
    """Image bytes kept in the database (blob store ``db``): no shared disk for remote workers."""

    __tablename__ = "blobs"

    sha256: str = Field(max_length=64, primary_key=True)
    byte_size: int = Field(nullable=False)
    data: bytes = Field(sa_type=sa.LargeBinary, nullable=False)
    created_at: datetime = _created_at()


class StepReview(SQLModel, table=True):
    """One reviewer's decision on one step, append-only (a trigger refuses UPDATE and DELETE)."""

    __tablename__ = "step_reviews"
    __table_args__ = (sa.CheckConstraint(f"decision IN ({_quoted(REVIEW_DECISIONS)})", name="ck_step_reviews_decision"),)

    id: int | None = Field(default=None, primary_key=True)
    step_id: int = Field(foreign_key="steps.id", nullable=False, index=True)
    reviewer_id: int = Field(foreign_key="users.id", nullable=False)
    decision: str = Field(max_length=16, nullable=False)
    comment: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = _created_at()


class StepComment(SQLModel, table=True):
    """A comment in a step's thread, optionally pinned to a point of its image (fractions of width and height)."""

    __tablename__ = "step_comments"
    __table_args__ = (sa.CheckConstraint("(x IS NULL AND y IS NULL) OR (x >= 0 AND x <= 1 AND y >= 0 AND y <= 1)",
                                         name="ck_step_comments_pin"),)

    id: int | None = Field(default=None, primary_key=True)
    step_id: int = Field(foreign_key="steps.id", nullable=False, index=True)
    author_id: int = Field(foreign_key="users.id", nullable=False)
    body: str = Field(sa_type=sa.Text, nullable=False)
    x: float | None = Field(default=None)
    y: float | None = Field(default=None)
    created_at: datetime = _created_at()


class Dataset(SQLModel, table=True):
    """A named fine-tuning dataset; its content lives in immutable versions."""

    __tablename__ = "datasets"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, nullable=False)
    created_by: int = Field(foreign_key="users.id", nullable=False)
    created_at: datetime = _created_at()


class DatasetVersion(SQLModel, table=True):
    """One immutable state of a dataset: every change (an import, a generation, an edit, a split) makes a new one."""

    __tablename__ = "dataset_versions"
    __table_args__ = (sa.UniqueConstraint("dataset_id", "number", name="uq_dataset_versions_number"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="datasets.id", nullable=False, index=True)
    number: int = Field(nullable=False)
    #: The version this one was made from (None: made from nothing, e.g. a first import).
    parent_id: int | None = Field(default=None, foreign_key="dataset_versions.id")
    #: What made it, in words ("Imported seed_chat_dataset.json (seed format)", "Edited row 17").
    note: str = Field(default="", max_length=500)
    row_count: int = Field(default=0, nullable=False)
    #: Rows kept aside (a failed check the admin did not overrule): stored, never exported or trained on.
    aside_count: int = Field(default=0, nullable=False)
    #: The seed the splits were drawn with; None while the version has no splits.
    split_seed: int | None = Field(default=None, sa_type=sa.BigInteger)
    #: The batch job that made it, if one did.
    job_id: int | None = Field(default=None, sa_type=BigIntId)
    #: What the generator spent: {"prompt_tokens": .., "completion_tokens": ..}, and other figures of the run.
    stats: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    created_by: int = Field(foreign_key="users.id", nullable=False)
    created_at: datetime = _created_at()


class DatasetRowRecord(SQLModel, table=True):
    """One request → commands example of one version (``finetune.dataset_rows.DatasetRow`` in the database)."""

    __tablename__ = "dataset_rows"
    __table_args__ = (sa.Index("ix_dataset_rows_version_position", "version_id", "position"),)

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    version_id: int = Field(foreign_key="dataset_versions.id", nullable=False)
    position: int = Field(nullable=False)
    request: str = Field(sa_type=sa.Text, nullable=False)
    language: str = Field(max_length=8, nullable=False)
    labels: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    conversation: list[list[str]] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    commands: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    source: str = Field(max_length=16, nullable=False)
    origin: str | None = Field(default=None, max_length=255)
    seed: int | None = Field(default=None, sa_type=sa.BigInteger)
    checks: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    split: str | None = Field(default=None, max_length=8)
    #: True for a row that failed a check and was not kept by an admin.
    aside: bool = Field(default=False, nullable=False)


class EvalRun(SQLModel, table=True):
    """One evaluation of a planner on a dataset version's split: what ran, on what, by whom, and the metrics."""

    __tablename__ = "eval_runs"

    id: int | None = Field(default=None, primary_key=True)
    #: The planner: "rules", "reference" (the dataset's own outputs), "openai", "local".
    planner: str = Field(max_length=32, nullable=False)
    #: What the planner was exactly: the model id, the adapter, the base URL's host (never a key).
    planner_detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    constrained: bool | None = Field(default=None)
    #: ``NAME@N`` of the dataset version, and the split (None: every usable row).
    dataset: str = Field(max_length=80, nullable=False)
    split: str | None = Field(default=None, max_length=8)
    example_count: int = Field(default=0, nullable=False)
    #: ``finetune.metrics.EvalMetrics.to_dict()``; empty until the run finished.
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    #: Wall time, examples per second, batch size.
    timings: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    status: str = Field(default="running", max_length=16, nullable=False)
    job_id: int | None = Field(default=None, sa_type=BigIntId, unique=True)
    created_by: int = Field(foreign_key="users.id", nullable=False)
    created_at: datetime = _created_at()
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EvalExample(SQLModel, table=True):
    """One example of a run: the request, what was expected, what the planner said, and its score."""

    __tablename__ = "eval_examples"
    __table_args__ = (sa.UniqueConstraint("run_id", "position", name="uq_eval_examples_position"),)

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    run_id: int = Field(foreign_key="eval_runs.id", nullable=False)
    position: int = Field(nullable=False)
    request: str = Field(sa_type=sa.Text, nullable=False)
    language: str = Field(max_length=8, nullable=False)
    labels: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    expected: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    reply: str | None = Field(default=None, sa_type=sa.Text)
    produced: list[Any] | None = Field(default=None, sa_type=JSONType)
    #: ``finetune.metrics.ExampleScore.to_dict()``.
    score: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)


class TrainingRun(SQLModel, table=True):
    """One LoRA fine-tuning of a local planner model on a dataset version's train split.

    A run outlives its jobs: a cancelled or interrupted run is resumed by a new job on the same row, so
    its step count and loss curve go on where the last checkpoint left them.
    """

    __tablename__ = "training_runs"

    id: int | None = Field(default=None, primary_key=True)
    #: The base model as the local planner names it: a ``.gguf`` file, an HF id or a model directory.
    base_model: str = Field(max_length=500, nullable=False)
    #: ``NAME@N`` of the dataset version (its train split is trained on, its val split evaluates checkpoints).
    dataset: str = Field(max_length=80, nullable=False)
    #: ``finetune.training_config.TrainingConfig`` as a dict: hyper-parameters, seed, steps, checkpoint interval.
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    status: str = Field(default="queued", max_length=16, nullable=False)
    step: int = Field(default=0, nullable=False)
    total_steps: int = Field(nullable=False)
    #: The job that runs (or last ran) it.
    job_id: int | None = Field(default=None, sa_type=BigIntId)
    #: Where it ran and what it measured: device, precision, examples, max length, wall time, tokens/s.
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    error: str | None = Field(default=None, sa_type=sa.Text)
    created_by: int = Field(foreign_key="users.id", nullable=False)
    created_at: datetime = _created_at()
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TrainingStep(SQLModel, table=True):
    """One logged optimiser step of a run: the loss curve and the speed, stored as training goes."""

    __tablename__ = "training_steps"
    __table_args__ = (sa.UniqueConstraint("run_id", "step", name="uq_training_steps_step"),)

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    run_id: int = Field(foreign_key="training_runs.id", nullable=False)
    step: int = Field(nullable=False)
    loss: float = Field(nullable=False)
    learning_rate: float = Field(nullable=False)
    tokens_per_s: float | None = Field(default=None)
    epoch: float | None = Field(default=None)
    at: datetime = _created_at()


class TrainingCheckpoint(SQLModel, table=True):
    """A run's adapter at a step (a blob), with the trainer state to resume from and its evaluation jobs."""

    __tablename__ = "training_checkpoints"
    __table_args__ = (sa.UniqueConstraint("run_id", "step", name="uq_training_checkpoints_step"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="training_runs.id", nullable=False)
    step: int = Field(nullable=False)
    #: A tar of the peft adapter directory (adapter_config.json, adapter_model.safetensors).
    adapter_key: str = Field(max_length=64, nullable=False)
    #: A tar of the whole trainer checkpoint (adapter, optimiser, scheduler, RNG states): what resuming needs.
    state_key: str | None = Field(default=None, max_length=64)
    loss: float | None = Field(default=None)
    #: The ``eval_run`` jobs queued for it: {"constrained": job id, "free": job id}.
    eval_jobs: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    created_at: datetime = _created_at()


class PlannerModel(SQLModel, table=True):
    """A fine-tuned planner everyone may choose in Settings: a base model and an adapter (one may be the default)."""

    __tablename__ = "planner_models"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, nullable=False, unique=True)
    base_model: str = Field(max_length=500, nullable=False)
    adapter_key: str = Field(max_length=64, nullable=False)
    checkpoint_id: int | None = Field(default=None, foreign_key="training_checkpoints.id")
    #: The planner of everyone who chose none in Settings (at most one row is the default).
    is_default: bool = Field(default=False, nullable=False)
    registered_by: int = Field(foreign_key="users.id", nullable=False)
    created_at: datetime = _created_at()
