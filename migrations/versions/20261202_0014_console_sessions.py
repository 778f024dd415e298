"""Console sessions: a signed-in browser's session, revocable server-side

Revision ID: 0014cs
Revises: 0012wh
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014cs'
down_revision: str | None = '0012wh'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'console_sessions',
        sa.Column('id', sa.String(32), primary_key=True),
        sa.Column('token_hash', sa.String(64), nullable=False),
        sa.Column('csrf_hash', sa.String(64), nullable=False),
        sa.Column(
            'key_id',
            sa.String(32),
            sa.ForeignKey('api_keys.id', name='fk_console_sessions_key_id_api_keys'),
            nullable=False,
        ),
        sa.Column(
            'created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True)),
        sa.UniqueConstraint('token_hash', name='uq_console_sessions_token_hash'),
    )
    op.create_index('ix_console_sessions_expires_at', 'console_sessions', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_console_sessions_expires_at', table_name='console_sessions')
    op.drop_table('console_sessions')
