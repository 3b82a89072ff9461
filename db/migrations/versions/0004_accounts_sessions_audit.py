"""Accounts and roles: users gain e-mail, role, active, password hash, OIDC identity and last sign-in;
sessions (token hashes only) and an append-only audit log.

The local user and every former ``is_admin`` user become ``admin``, everyone else ``editor``.
Every change to ``users`` is an ``ALTER TABLE`` (unique indexes instead of constraints): SQLite
would otherwise rebuild the table, which the rows of every other table refer to.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ROLES = "('admin', 'editor', 'reviewer', 'viewer')"


def _is_postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    if _is_postgres():
        op.add_column('users', sa.Column('role', sa.String(length=16), server_default='editor', nullable=False))
        op.create_check_constraint('ck_users_role', 'users', f"role IN {_ROLES}")
    else:
        # A column's own CHECK may come with ADD COLUMN on SQLite; a table constraint would need a rebuild.
        op.execute("ALTER TABLE users ADD COLUMN role VARCHAR(16) DEFAULT 'editor' NOT NULL "
                   f"CONSTRAINT ck_users_role CHECK (role IN {_ROLES})")
    op.add_column('users', sa.Column('email', sa.String(length=254), nullable=True))
    op.add_column('users', sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))
    op.add_column('users', sa.Column('password_hash', sa.String(length=255), nullable=True))
    op.add_column('users', sa.Column('oidc_issuer', sa.String(length=255), nullable=True))
    op.add_column('users', sa.Column('oidc_subject', sa.String(length=255), nullable=True))
    op.add_column('users', sa.Column('last_sign_in_at', db.types.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE users SET role = 'admin' WHERE is_admin OR id = 1")
    op.drop_column('users', 'is_admin')
    op.create_index('ix_users_email', 'users', ['email'], unique=True)
    op.create_index('ix_users_oidc', 'users', ['oidc_issuer', 'oidc_subject'], unique=True)

    op.create_table('sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_index(op.f('ix_sessions_user_id'), 'sessions', ['user_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', db.types.BigIntId, nullable=False),
    sa.Column('at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object_type', sa.String(length=64), nullable=False),
    sa.Column('object_id', sa.String(length=128), nullable=True),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_audit_log_object', 'audit_log', ['object_type', 'object_id'], unique=False)
    _create_append_only_guard()


def _create_append_only_guard() -> None:
    """The audit log keeps every row as written, whatever code or person tries later."""
    if _is_postgres():
        op.execute(
            """
            CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'the audit log is append-only: % is refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql;
            """
        )
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
        op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"""
                CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log
                BEGIN
                    SELECT RAISE(ABORT, 'the audit log is append-only: {verb} is refused');
                END
                """
            )


def _drop_append_only_guard() -> None:
    if _is_postgres():
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")


def downgrade() -> None:
    _drop_append_only_guard()
    op.drop_index('ix_audit_log_object', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index(op.f('ix_sessions_user_id'), table_name='sessions')
    op.drop_table('sessions')

    op.drop_index('ix_users_oidc', table_name='users')
    op.drop_index('ix_users_email', table_name='users')
    op.add_column('users', sa.Column('is_admin', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute("UPDATE users SET is_admin = (role = 'admin')")
    if _is_postgres():
        op.drop_constraint('ck_users_role', 'users', type_='check')
    for column in ('last_sign_in_at', 'oidc_subject', 'oidc_issuer', 'password_hash', 'active', 'email', 'role'):
        op.drop_column('users', column)
