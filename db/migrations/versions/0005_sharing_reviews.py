"""Sharing and review: histories gain a visibility and a version (who changed what, when); steps gain
append-only reviews and comment threads (optionally pinned to a point of the image).

Histories that exist already were everyone's (one gallery for all), so they become ``team``; new
ones start ``private``. They stay with their owner: on a single-user database that is the local
user, the first admin (an admin created later adopts them, see ``jobs.services.accounts``).
Columns are added with ``ALTER TABLE`` (not a table rebuild) for the reason 0004 gives.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_APPEND_ONLY = ("step_reviews", "step_comments")


def _is_postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    op.execute("ALTER TABLE histories ADD COLUMN visibility VARCHAR(16) DEFAULT 'private' NOT NULL "
               "CONSTRAINT ck_histories_visibility CHECK (visibility IN ('private', 'team'))")
    op.execute("UPDATE histories SET visibility = 'team'")
    op.add_column('histories', sa.Column('version', sa.Integer(), server_default='0', nullable=False))
    op.execute("ALTER TABLE histories ADD COLUMN changed_by INTEGER REFERENCES users (id)")
    op.add_column('histories', sa.Column('changed_at', db.types.UTCDateTime(timezone=True), nullable=True))
    op.add_column('histories', sa.Column('change', sa.String(length=32), nullable=True))

    op.create_table('step_reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.Integer(), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("decision IN ('approve', 'reject', 'request_changes')", name='ck_step_reviews_decision'),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['step_id'], ['steps.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_step_reviews_step_id'), 'step_reviews', ['step_id'], unique=False)

    op.create_table('step_comments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('x', sa.Float(), nullable=True),
    sa.Column('y', sa.Float(), nullable=True),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('(x IS NULL AND y IS NULL) OR (x >= 0 AND x <= 1 AND y >= 0 AND y <= 1)',
                       name='ck_step_comments_pin'),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['step_id'], ['steps.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_step_comments_step_id'), 'step_comments', ['step_id'], unique=False)
    _create_append_only_guards()


def _create_append_only_guards() -> None:
    """Reviews and comments are a record: what was said stays as it was said."""
    if _is_postgres():
        op.execute(
            """
            CREATE FUNCTION chatedit_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % is refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql;
            """
        )
        for table in _APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION chatedit_append_only()")
    else:
        for table in _APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"""
                    CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
                    BEGIN
                        SELECT RAISE(ABORT, '{table} is append-only: {verb} is refused');
                    END
                    """
                )


def _drop_append_only_guards() -> None:
    for table in _APPEND_ONLY:
        if _is_postgres():
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if _is_postgres():
        op.execute("DROP FUNCTION IF EXISTS chatedit_append_only()")


def downgrade() -> None:
    _drop_append_only_guards()
    op.drop_index(op.f('ix_step_comments_step_id'), table_name='step_comments')
    op.drop_table('step_comments')
    op.drop_index(op.f('ix_step_reviews_step_id'), table_name='step_reviews')
    op.drop_table('step_reviews')
    if _is_postgres():
        op.drop_constraint('ck_histories_visibility', 'histories', type_='check')
    # SQLite drops a column with its own CHECK natively; a batch rebuild would keep the CHECK and fail.
    for column in ('change', 'changed_at', 'changed_by', 'version', 'visibility'):
        op.drop_column('histories', column)
