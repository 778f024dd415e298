"""fxiaoke sync cursors and account links

Revision ID: 0004fx
Revises: 0003
Create Date: 2026-12-01 20:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004fx'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('fxiaoke_sync_cursors',
    sa.Column('corp_id', sa.String(length=64), nullable=False),
    sa.Column('object_api_name', sa.String(length=128), nullable=False),
    sa.Column('modified_ms', sa.BigInteger(), nullable=False),
    sa.Column('record_id', sa.String(length=128, collation='C'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('corp_id', 'object_api_name', name=op.f('pk_fxiaoke_sync_cursors'))
    )
    op.create_table('fxiaoke_accounts',
    sa.Column('corp_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('corp_id', 'account_id', name=op.f('pk_fxiaoke_accounts'))
    )


def downgrade() -> None:
    op.drop_table('fxiaoke_accounts')
    op.drop_table('fxiaoke_sync_cursors')
