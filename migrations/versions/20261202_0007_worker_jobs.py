"""worker jobs: scheme_activations becomes the general jobs table (claim, cursor, cancel)

Activation and recompute run in the worker as jobs; the existing activation
rows become jobs of kind 'activate' with their ids, counts and timestamps kept.
A row left 'running' by an API process that died is marked failed (there is no
cursor to resume it from), as that API would have done at its next start.

Revision ID: 0007jb
Revises: 0006st
Create Date: 2026-12-02 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007jb'
down_revision: str | None = '0006st'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(
        'uq_scheme_activations_one_running',
        table_name='scheme_activations',
        postgresql_where="status = 'running'",
    )
    op.execute(
        "UPDATE scheme_activations SET status = 'failed', error = coalesce(error, 'interrupted'),"
        " finished_at = coalesce(finished_at, now()) WHERE status = 'running'"
    )
    op.rename_table('scheme_activations', 'jobs')
    op.execute('ALTER SEQUENCE scheme_activations_id_seq RENAME TO jobs_id_seq')
    op.execute('ALTER TABLE jobs RENAME CONSTRAINT pk_scheme_activations TO pk_jobs')
    op.add_column('jobs', sa.Column('kind', sa.String(length=16), nullable=True))
    op.execute("UPDATE jobs SET kind = 'activate'")
    op.alter_column('jobs', 'kind', nullable=False)
    op.add_column(
        'jobs',
        sa.Column(
            'params',
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column('jobs', sa.Column('cursor', sa.String(length=128), nullable=True))
    op.add_column('jobs', sa.Column('as_of', sa.BigInteger(), nullable=True))
    op.add_column('jobs', sa.Column('claimed_by', sa.String(length=128), nullable=True))
    op.add_column('jobs', sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('jobs', sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        'jobs', sa.Column('attempts', sa.Integer(), server_default='0', nullable=False)
    )
    op.add_column(
        'jobs', sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column('jobs', sa.Column('created_by', sa.String(length=32), nullable=True))
    op.create_index(
        'uq_jobs_one_unfinished',
        'jobs',
        [sa.text('(true)')],
        unique=True,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index(
        'uq_jobs_one_unfinished',
        table_name='jobs',
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    # Only activations existed before; other jobs have no place to go.
    op.execute("DELETE FROM jobs WHERE kind <> 'activate'")
    op.execute(
        "UPDATE jobs SET status = 'failed', error = coalesce(error, 'interrupted'),"
        " finished_at = coalesce(finished_at, now()) WHERE status IN ('queued', 'running')"
    )
    op.execute("UPDATE jobs SET status = 'failed' WHERE status = 'cancelled'")
    for column in (
        'created_by', 'cancel_requested_at', 'attempts', 'heartbeat_at', 'claimed_at',
        'claimed_by', 'as_of', 'cursor', 'params', 'kind',
    ):  # fmt: skip
        op.drop_column('jobs', column)
    op.execute('ALTER TABLE jobs RENAME CONSTRAINT pk_jobs TO pk_scheme_activations')
    op.execute('ALTER SEQUENCE jobs_id_seq RENAME TO scheme_activations_id_seq')
    op.rename_table('jobs', 'scheme_activations')
    op.create_index(
        'uq_scheme_activations_one_running',
        'scheme_activations',
        ['status'],
        unique=True,
        postgresql_where="status = 'running'",
    )
