"""bounded customer state and the facts log (filled in by the state-model change)

Revision ID: 0006st
Revises: 0005ik
Create Date: 2026-12-02 00:00:00
"""

from collections.abc import Sequence

revision: str = '0006st'
down_revision: str | None = '0005ik'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
