"""intake keys (several scopes, a rate per key) and intake fingerprints

Revision ID: 0005ik
Revises: 0004fx
Create Date: 2026-12-01 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005ik'
down_revision: str | None = '0004fx'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One key store for both services: `scope` holds space-separated scopes
    # (read, admin, orders:write, calls:write, imports:write).
    op.alter_column('api_keys', 'scope', type_=sa.String(length=128), existing_nullable=False)
    op.add_column('api_keys', sa.Column('rate_per_second', sa.Float(), nullable=True))
    op.add_column('api_keys', sa.Column('burst', sa.Integer(), nullable=True))
    op.create_table('intake_fingerprints',
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('digests', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_intake_fingerprints'))
    )
    op.create_index(op.f('ix_intake_fingerprints_created_at'), 'intake_fingerprints', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_intake_fingerprints_created_at'), table_name='intake_fingerprints')
    op.drop_table('intake_fingerprints')
    op.drop_column('api_keys', 'burst')
    op.drop_column('api_keys', 'rate_per_second')
    op.alter_column('api_keys', 'scope', type_=sa.String(length=16), existing_nullable=False)
