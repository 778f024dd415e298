"""Read models of customers for the API."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from classifier.customers import repository
from classifier.customers.schemas import AggregatesOut, CustomerClassOut, CustomerOut
from classifier.engine import from_micros
from classifier.errors import CustomerNotFound
from classifier.models import Customer


def to_out(row: Customer) -> CustomerOut:
    classes = {
        dim: CustomerClassOut(
            dimension=dim,
            cls=c["class"],
            since=from_micros(c["since"]),
            scheme_version=c["scheme_version"],
            rule=c["rule"],
            explanation=c["explanation"],
        )
        for dim, c in row.classes.items()
    }
    return CustomerOut(
        id=row.id,
        classes=classes,
        aggregates=AggregatesOut.model_validate(row, from_attributes=True),
        features=row.features,
        scheme_version=row.scheme_version,
        evaluated_at=row.evaluated_at,
        next_review_at=row.next_review_at,
        updated_at=row.updated_at,
    )


async def get_customer(session: AsyncSession, customer_id: str) -> CustomerOut:
    row = await repository.get(session, customer_id)
    if row is None:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    return to_out(row)
