"""facts document as a checkpoint of the facts log (customers.facts_through)

A customer's facts document is written every few facts instead of at every
one: `facts_through` is the last facts-log id it includes, and a load folds
the log rows after it. Existing documents include every logged fact of their
customer, so each starts at its customer's latest log id. The log gains an
index on (customer_id, id) for those tail reads.

Revision ID: 0008fc
Revises: 0007jb
Create Date: 2026-12-02 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008fc'
down_revision: str | None = '0007jb'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'customers',
        sa.Column('facts_through', sa.BigInteger(), server_default='0', nullable=False),
    )
    op.create_index(
        'ix_customer_facts_customer_id_id', 'customer_facts', ['customer_id', 'id'], unique=False
    )
    op.execute(
        "UPDATE customers c SET facts_through = f.last FROM "
        "(SELECT customer_id, max(id) AS last FROM customer_facts GROUP BY customer_id) f "
        "WHERE f.customer_id = c.id"
    )


def downgrade() -> None:
    # Documents behind their log would lose facts: write none back, refuse instead.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM customers c WHERE EXISTS (SELECT 1 FROM "
        "customer_facts f WHERE f.customer_id = c.id AND f.id > c.facts_through)) THEN "
        "RAISE EXCEPTION 'customers have facts newer than their document; a downgrade "
        "would lose them'; END IF; END $$"
    )
    op.drop_index('ix_customer_facts_customer_id_id', table_name='customer_facts')
    op.drop_column('customers', 'facts_through')
