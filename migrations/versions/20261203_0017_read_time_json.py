"""customers.motion and customers.document_slots as json, not jsonb

Revision ID: 0017rtj
Revises: 0016cls
Create Date: 2026-12-03 06:55:00

A lookup reads both beside the rendered document (what moves with the read,
and where it goes); no query looks inside them. As jsonb they were printed
back to text on every read: for a bulk lookup of 1,000 customers that was
about a third of PostgreSQL's time. json keeps the text the worker wrote. The
stale-document trigger names `motion`: it is dropped and made again around
the change. Nothing stored is lost.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0017rtj'
down_revision: str | None = '0016cls'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGER = (
    "CREATE TRIGGER customers_document_stale BEFORE UPDATE OF classes, features, motion, "
    "overrides, scheme_version, evaluated_at ON customers "
    "FOR EACH ROW EXECUTE FUNCTION customers_document_stale()"
)


def _retype(kind: str) -> None:
    op.execute("DROP TRIGGER customers_document_stale ON customers")
    op.execute(
        f"ALTER TABLE customers "
        f"ALTER COLUMN motion DROP DEFAULT, "
        f"ALTER COLUMN motion TYPE {kind} USING motion::{kind}, "
        f"ALTER COLUMN motion SET DEFAULT '{{}}'::{kind}, "
        f"ALTER COLUMN document_slots TYPE {kind} USING document_slots::{kind}"
    )
    op.execute(TRIGGER)


def upgrade() -> None:
    _retype("json")


def downgrade() -> None:
    _retype("jsonb")
