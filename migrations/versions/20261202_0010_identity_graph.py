"""The identity graph: identity_links, customer_merges, identity_apart,
customers.merged_into and customer_facts.origin_id

Nothing existing changes meaning: no customer is merged, every fact's origin
is its customer. Events before this revision carried no identity digests, so
the graph starts empty and grows with the events that carry them (a replay of
the topic fills it for the events still on it).

Revision ID: 0010id
Revises: 0009mv
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0010id'
down_revision: str | None = '0009mv'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'identity_links',
        sa.Column('kind', sa.String(16), primary_key=True),
        sa.Column('digest', sa.String(64), primary_key=True),
        sa.Column('customer_id', sa.String(128), nullable=False),
        sa.Column('subjects', postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column('ambiguous', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        sa.Column(
            'created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index('ix_identity_links_customer', 'identity_links', ['customer_id'])
    op.create_index(
        'ix_identity_links_ambiguous',
        'identity_links',
        ['kind'],
        postgresql_where=sa.text('ambiguous'),
    )
    op.create_table(
        'customer_merges',
        sa.Column('id', sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column('survivor_id', sa.String(128), nullable=False),
        sa.Column('absorbed_id', sa.String(128), nullable=False),
        sa.Column('cause', sa.String(16), nullable=False),
        sa.Column('event_id', sa.String(200)),
        sa.Column('actor', sa.String(200)),
        sa.Column(
            'merged_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column('undone_at', sa.DateTime(timezone=True)),
        sa.Column('undone_by', sa.String(200)),
    )
    op.create_index(
        'ix_customer_merges_survivor', 'customer_merges', ['survivor_id', 'merged_at']
    )
    op.create_index(
        'ix_customer_merges_absorbed', 'customer_merges', ['absorbed_id', 'merged_at']
    )
    op.create_table(
        'identity_apart',
        sa.Column('low_id', sa.String(128), primary_key=True),
        sa.Column('high_id', sa.String(128), primary_key=True),
        sa.Column(
            'created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.add_column('customers', sa.Column('merged_into', sa.String(128)))
    op.create_index(
        'ix_customers_merged_into',
        'customers',
        ['merged_into'],
        postgresql_where=sa.text('merged_into IS NOT NULL'),
    )
    op.add_column('customer_facts', sa.Column('origin_id', sa.String(128)))


def downgrade() -> None:
    op.drop_column('customer_facts', 'origin_id')
    op.drop_index('ix_customers_merged_into', table_name='customers')
    op.drop_column('customers', 'merged_into')
    op.drop_table('identity_apart')
    op.drop_table('customer_merges')
    op.drop_table('identity_links')
