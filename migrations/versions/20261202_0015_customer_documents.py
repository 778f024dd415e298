"""Customers' public documents, rendered by the worker and sent as they are by the API

Revision ID: 0015doc
Revises: 0014cs
Create Date: 2026-12-02 11:00:00

`document` holds the customer's part of `CustomerOut` as JSON bytes and
`document_slots` where the values that move with the read sit in it
(processing/documents.py). A write that renders the document bumps
`document_rev`; the trigger empties the document when any other write changes
what it shows, and a read without one renders from the columns. Existing rows
start without one: they are read as before until the worker writes them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = '0015doc'
down_revision: str | None = '0014cs'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STALE = """
CREATE FUNCTION customers_document_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.document_rev IS NOT DISTINCT FROM OLD.document_rev THEN
        NEW.document := NULL;
        NEW.document_slots := NULL;
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.add_column('customers', sa.Column('document', sa.LargeBinary(), nullable=True))
    op.add_column('customers', sa.Column('document_slots', JSONB(), nullable=True))
    op.add_column(
        'customers',
        sa.Column('document_rev', sa.BigInteger(), nullable=False, server_default='0'),
    )
    # Kept in the row (compressed, lz4: cheap to unpack), not in the TOAST table:
    # a lookup reads one heap tuple, not three more chunks through another index.
    op.execute(
        "ALTER TABLE customers ALTER COLUMN document SET STORAGE MAIN, "
        "ALTER COLUMN document SET COMPRESSION lz4"
    )
    op.execute(STALE)
    op.execute(
        "CREATE TRIGGER customers_document_stale BEFORE UPDATE OF classes, features, motion, "
        "overrides, scheme_version, evaluated_at ON customers "
        "FOR EACH ROW EXECUTE FUNCTION customers_document_stale()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER customers_document_stale ON customers")
    op.execute("DROP FUNCTION customers_document_stale()")
    op.drop_column('customers', 'document_rev')
    op.drop_column('customers', 'document_slots')
    op.drop_column('customers', 'document')
