"""customers.motion: how the time-moving feature values of a customer move

For each feature whose value moves with time alone (days since, a decaying
score), the worker stores its anchor or its value and half-life at the
evaluation instant; a read shows such values as of the read. Empty for
existing customers until their next evaluation (their values are then shown
as of the evaluation, as before).

Revision ID: 0009mv
Revises: 0008fc
Create Date: 2026-12-02 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0009mv'
down_revision: str | None = '0008fc'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'customers',
        sa.Column(
            'motion',
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column('customers', 'motion')
