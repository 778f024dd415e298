"""customers.classes as json, not jsonb: stored and sent as the text the worker wrote

Revision ID: 0016cls
Revises: 0015doc
Create Date: 2026-12-03 06:40:00

Every batch and every job chunk reads and rewrites the classes (with their
explanations: the largest column of a customer) of the customers it touches,
and no query looks inside them but the cut-off flagging (which casts). jsonb
is parsed into its binary form on every write and printed back to text on
every read; json keeps the text. Measured on 1,000 customers of the benchmark
(100,000 in the table): a locked read 88-110 -> 29-55 ms, an update 274-286 ->
207-218 ms. The stale-document trigger names the column, so it is dropped and
made again around the change. Nothing stored is lost: the same JSON, as text.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0016cls'
down_revision: str | None = '0015doc'
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
        f"ALTER TABLE customers ALTER COLUMN classes DROP DEFAULT, "
        f"ALTER COLUMN classes TYPE {kind} USING classes::{kind}"
    )
    op.execute(TRIGGER)


def upgrade() -> None:
    _retype("json")


def downgrade() -> None:
    _retype("jsonb")
