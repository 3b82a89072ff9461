"""The web app's state: per-person editing defaults, a history's base step and newest edit job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preferences', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))

    with op.batch_alter_table('histories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('base_step_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('last_job_id', db.types.BigIntId, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('histories', schema=None) as batch_op:
        batch_op.drop_column('last_job_id')
        batch_op.drop_column('base_step_id')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('preferences')
