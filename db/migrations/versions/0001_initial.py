"""Initial schema: users, images, segmentations, histories, steps, chat, jobs, workers, blobs.

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('byte_size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=False),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('workers',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('lanes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=False),
    sa.Column('gpu_name', sa.String(length=255), nullable=True),
    sa.Column('current_jobs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('started_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('histories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('histories', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_histories_owner_id'), ['owner_id'], unique=False)

    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('byte_size', sa.Integer(), nullable=False),
    sa.Column('blob_key', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256')
    )
    op.create_table('jobs',
    sa.Column('id', db.types.BigIntId, nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('lane', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('run_after', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('fair_rank', sa.BigInteger(), nullable=False),
    sa.Column('lease_owner', sa.String(length=128), nullable=True),
    sa.Column('lease_expires_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('progress_message', sa.String(length=500), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error_type', sa.String(length=200), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('error_traceback', sa.Text(), nullable=True),
    sa.Column('retry_of', db.types.BigIntId, nullable=True),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("lane IN ('interactive', 'gpu', 'batch')", name='ck_jobs_lane'),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name='ck_jobs_status'),
    sa.CheckConstraint('attempts >= 0 AND max_attempts >= 1', name='ck_jobs_attempts'),
    sa.CheckConstraint('progress >= 0 AND progress <= 1', name='ck_jobs_progress'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['retry_of'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_claim', ['lane', sa.text('priority DESC'), 'fair_rank', 'id'], unique=False, sqlite_where=sa.text("status = 'queued'"), postgresql_where=sa.text("status = 'queued'"))
        batch_op.create_index('ix_jobs_lane_rank', ['lane', 'fair_rank'], unique=False, sqlite_where=sa.text("status = 'queued'"), postgresql_where=sa.text("status = 'queued'"))
        batch_op.create_index('ix_jobs_lease', ['lease_expires_at'], unique=False, sqlite_where=sa.text("status = 'running'"), postgresql_where=sa.text("status = 'running'"))
        batch_op.create_index('ix_jobs_owner_rank', ['owner_id', 'lane', 'fair_rank'], unique=False, sqlite_where=sa.text("status = 'queued'"), postgresql_where=sa.text("status = 'queued'"))
        batch_op.create_index('ix_jobs_status_created', ['status', 'created_at'], unique=False)

    op.create_table('chat_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('history_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('commands', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('system', 'user', 'assistant')", name='ck_chat_messages_role'),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['history_id'], ['histories.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chat_messages_history_id'), ['history_id'], unique=False)

    op.create_table('job_outputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', db.types.BigIntId, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('blob_key', sa.String(length=64), nullable=False),
    sa.Column('byte_size', sa.Integer(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'name', name='uq_job_outputs_job_name')
    )
    with op.batch_alter_table('job_outputs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_outputs_job_id'), ['job_id'], unique=False)

    op.create_table('segmentations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.String(length=255), nullable=False),
    sa.Column('label_map_key', sa.String(length=64), nullable=False),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_id', 'model_id', name='uq_segmentations_image_model')
    )
    with op.batch_alter_table('segmentations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_segmentations_image_id'), ['image_id'], unique=False)

    op.create_table('steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('history_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('image_id', sa.Integer(), nullable=True),
    sa.Column('commands', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('params', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('job_id', db.types.BigIntId, nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['history_id'], ['histories.id'], ),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.ForeignKeyConstraint(['parent_id'], ['steps.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id')
    )
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_steps_history_id'), ['history_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_steps_parent_id'), ['parent_id'], unique=False)

    _create_terminal_status_guard()
    op.bulk_insert(
        sa.table(
            "users",
            sa.column("id", sa.Integer),
            sa.column("name", sa.String),
            sa.column("display_name", sa.String),
            sa.column("is_admin", sa.Boolean),
            sa.column("created_at", db.types.UTCDateTime),
        ),
        [{"id": 1, "name": "local", "display_name": "Local user", "is_admin": True, "created_at": db.types.utcnow()}],
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))")


_TERMINAL = "('succeeded', 'failed', 'cancelled')"


def _create_terminal_status_guard() -> None:
    """A job that reached a terminal status keeps it, whatever code or person tries later."""
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION jobs_keep_terminal_status() RETURNS trigger AS $$
            BEGIN
                IF OLD.status IN {_TERMINAL} AND NEW.status IS DISTINCT FROM OLD.status THEN
                    RAISE EXCEPTION 'job % is % and cannot become %', OLD.id, OLD.status, NEW.status
                        USING ERRCODE = 'check_violation';
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql;
            """
        )
        op.execute(
            "CREATE TRIGGER jobs_keep_terminal_status BEFORE UPDATE OF status ON jobs "
            "FOR EACH ROW EXECUTE FUNCTION jobs_keep_terminal_status()"
        )
    else:
        op.execute(
            f"""
            CREATE TRIGGER jobs_keep_terminal_status BEFORE UPDATE OF status ON jobs
            WHEN OLD.status IN {_TERMINAL} AND NEW.status IS NOT OLD.status
            BEGIN
                SELECT RAISE(ABORT, 'a job in a terminal status cannot change status');
            END
            """
        )


def _drop_terminal_status_guard() -> None:
    op.execute("DROP TRIGGER IF EXISTS jobs_keep_terminal_status" + (" ON jobs" if op.get_context().dialect.name == "postgresql" else ""))
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS jobs_keep_terminal_status()")


def downgrade() -> None:
    _drop_terminal_status_guard()
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_steps_parent_id'))
        batch_op.drop_index(batch_op.f('ix_steps_history_id'))

    op.drop_table('steps')
    with op.batch_alter_table('segmentations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_segmentations_image_id'))

    op.drop_table('segmentations')
    with op.batch_alter_table('job_outputs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_outputs_job_id'))

    op.drop_table('job_outputs')
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chat_messages_history_id'))

    op.drop_table('chat_messages')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_status_created')
        batch_op.drop_index('ix_jobs_claim')
        batch_op.drop_index('ix_jobs_owner_rank', sqlite_where=sa.text("status = 'queued'"), postgresql_where=sa.text("status = 'queued'"))
        batch_op.drop_index('ix_jobs_lease', sqlite_where=sa.text("status = 'running'"), postgresql_where=sa.text("status = 'running'"))
        batch_op.drop_index('ix_jobs_lane_rank', sqlite_where=sa.text("status = 'queued'"), postgresql_where=sa.text("status = 'queued'"))

    op.drop_table('jobs')
    op.drop_table('images')
    with op.batch_alter_table('histories', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_histories_owner_id'))

    op.drop_table('histories')
    op.drop_table('workers')
    op.drop_table('users')
    op.drop_table('blobs')
