"""Evaluation runs: a planner scored on a dataset version's split, with every example kept.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('eval_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('planner', sa.String(length=32), nullable=False),
    sa.Column('planner_detail', _JSON, nullable=False),
    sa.Column('constrained', sa.Boolean(), nullable=True),
    sa.Column('dataset', sa.String(length=80), nullable=False),
    sa.Column('split', sa.String(length=8), nullable=True),
    sa.Column('example_count', sa.Integer(), nullable=False),
    sa.Column('metrics', _JSON, nullable=False),
    sa.Column('timings', _JSON, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('job_id', db.types.BigIntId, nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id')
    )
    op.create_table('eval_examples',
    sa.Column('id', db.types.BigIntId, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('request', sa.Text(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('labels', _JSON, nullable=False),
    sa.Column('expected', _JSON, nullable=False),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.Column('produced', _JSON, nullable=True),
    sa.Column('score', _JSON, nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['eval_runs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'position', name='uq_eval_examples_position')
    )


def downgrade() -> None:
    op.drop_table('eval_examples')
    op.drop_table('eval_runs')
