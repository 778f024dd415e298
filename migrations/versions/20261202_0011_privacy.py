"""Privacy: erasures (receipts), suppressions, and the append-only audit_log

Revision ID: 0011pv
Revises: 0010id
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0011pv'
down_revision: str | None = '0010id'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'erasures',
        sa.Column('id', sa.Uuid(), primary_key=True),
        sa.Column('target_kind', sa.String(16), nullable=False),
        sa.Column('target', sa.String(200)),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('requested_by', sa.String(200), nullable=False),
        sa.Column(
            'requested_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column('completed_at', sa.DateTime(timezone=True)),
        sa.Column(
            'erased',
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column('error', sa.Text()),
    )
    op.create_index(
        'ix_erasures_pending',
        'erasures',
        ['requested_at'],
        postgresql_where=sa.text("status <> 'completed'"),
    )
    op.create_table(
        'suppressions',
        sa.Column('kind', sa.String(16), primary_key=True),
        sa.Column('digest', sa.String(64), primary_key=True),
        sa.Column('erasure_id', sa.Uuid()),
        sa.Column(
            'created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column('lifted_at', sa.DateTime(timezone=True)),
        sa.Column('lifted_by', sa.String(200)),
    )
    op.create_index(
        'ix_suppressions_active',
        'suppressions',
        ['kind', 'digest'],
        postgresql_where=sa.text('lifted_at IS NULL'),
    )
    op.create_table(
        'audit_log',
        sa.Column('id', sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column('actor', sa.String(200), nullable=False),
        sa.Column('action', sa.String(64), nullable=False),
        sa.Column('target', sa.String(200)),
        sa.Column(
            'details',
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.create_index('ix_audit_log_action_at', 'audit_log', ['action', 'at'])
    # Append-only: rows are never changed or deleted (TRUNCATE stays an operator's act).
    op.execute(
        "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table('audit_log')
    op.drop_table('suppressions')
    op.drop_table('erasures')
