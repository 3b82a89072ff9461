"""Browser previews of images, a history's stored selection, and soft deletion of histories.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preview_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('thumbnail_key', sa.String(length=64), nullable=True))

    with op.batch_alter_table('histories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('selection_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', db.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('histories', schema=None) as batch_op:
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('selection_key')

    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_column('thumbnail_key')
        batch_op.drop_column('preview_key')
