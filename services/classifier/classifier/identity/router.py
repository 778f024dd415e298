"""Merges and unmerges by hand, and the identifiers too shared to merge anything."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import text

from classifier import audit
from classifier.auth import ADMIN_ONLY, Principal, ReadAccess, require_admin
from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.customers import service
from classifier.customers.schemas import CustomerOut
from classifier.db import SessionDep
from classifier.errors import Conflict, CustomerNotFound
from classifier.identity import graph, identifiers
from classifier.processing.batch import BatchProcessor
from eventschemas.events import CustomerId
from eventschemas.problems import Problem

router = APIRouter(tags=["identity"], dependencies=[ReadAccess])
PathId = Annotated[str, Path(min_length=1, max_length=128, description="The customer id.")]
Admin = Annotated[Principal, Depends(require_admin)]
RESPONSES: dict[int | str, dict[str, Any]] = {
    **ADMIN_ONLY,
    404: {"model": Problem, "description": "No such customer."},
    409: {"model": Problem, "description": "An id is merged elsewhere."},
}


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    absorb: list[CustomerId] = Field(
        min_length=1, max_length=100, description="Customer ids that become this customer's."
    )

    @field_validator("absorb")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an id is listed twice")
        return value


class UnmergeIn(BaseModel):
    """What to split off: ids merged into this customer, and/or e-mails and phones
    (each takes the ids whose events carried it), at least one in all."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: list[CustomerId] = Field(
        default_factory=list,
        max_length=100,
        description="Ids merged into this customer to split off again, with the facts "
        "and identifiers that came with them.",
    )
    emails: list[Annotated[str, Field(max_length=254)]] = Field(default_factory=list, max_length=20)
    phones: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _some(self) -> UnmergeIn:
        if not (self.customer_ids or self.emails or self.phones):
            raise ValueError("name at least one of customer_ids, emails, phones")
        return self


class AmbiguousIdentifier(BaseModel):
    kind: str = Field(description="email or phone")
    digest: str = Field(description="The keyed digest ingest sent (never the value).")
    customers: int = Field(description="Customer ids it was seen with (at least).")


async def _status(session: Any, ids: list[str]) -> dict[str, str | None]:
    rows = await session.execute(
        text("SELECT id, merged_into FROM customers WHERE id = ANY(:ids)"), {"ids": ids}
    )
    return dict(rows.all())


def _entry(
    request: Request, admin: Principal, action: str, survivor: str, counts: dict[str, int]
) -> audit.Entry:
    """The audit entry of a merge or unmerge: the survivor by its keyed digest, counts only."""
    settings = cast(ClassifierSettings, request.app.state.settings)
    target = audit.customer_ref(settings, survivor)
    return audit.Entry(audit.actor_of(admin), action, target, dict(counts))


async def _carriers(request: Request, session: Any, body: UnmergeIn) -> list[str]:
    """The ids merged into the customer whose events carried these e-mails/phones."""
    if not (body.emails or body.phones):
        return []
    settings = cast(ClassifierSettings, request.app.state.settings)
    if settings.identity_key is None:
        raise Conflict("CLASSIFIER_IDENTITY_KEY is not set: e-mails and phones cannot be matched")
    key = settings.identity_key.get_secret_value().encode()
    wanted = [("email", identifiers.email_digest(key, e, "emails")) for e in body.emails]
    wanted += [
        ("phone", identifiers.phone_digest(key, p, settings.default_phone_region, "phones"))
        for p in body.phones
    ]
    found: list[str] = []
    for kind, digest in wanted:
        subjects = await session.scalar(
            text("SELECT subjects FROM identity_links WHERE kind = :k AND digest = :d"),
            {"k": kind, "d": digest},
        )
        found += list(subjects or [])
    return found


async def _answer(request: Request, customer_id: str) -> Response:
    clock = cast(Clock, request.app.state.clock)
    document = await service.get_customer(request.app.state.reader, customer_id, clock())
    return Response(document, media_type="application/json")


@router.post(
    "/v1/customers/{customer_id}/merge",
    response_model=CustomerOut,
    responses={**RESPONSES, 422: {"model": Problem}},
)
async def merge(
    customer_id: PathId, body: MergeIn, request: Request, session: SessionDep, admin: Admin
) -> Response:
    """Merge customers into this one (it survives): their facts join its facts, they
    leave their classes, and their ids answer with this customer from now on. Class
    changes carry reason `merge`; the audit trail names the API key."""
    if customer_id in body.absorb:
        raise Conflict(f"{customer_id!r} cannot absorb itself")
    known = await _status(session, [customer_id, *body.absorb])
    await session.rollback()
    if customer_id not in known:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    if known[customer_id] is not None:
        raise Conflict(f"{customer_id!r} was merged into {known[customer_id]!r}: merge into it")
    unknown = [a for a in body.absorb if a not in known]
    if unknown:
        raise CustomerNotFound(f"no customer with id {', '.join(map(repr, unknown))}")
    elsewhere = [a for a in body.absorb if known[a] not in (None, customer_id)]
    if elsewhere:
        raise Conflict(
            "already merged into another customer: "
            + ", ".join(f"{a!r} (into {known[a]!r})" for a in elsewhere)
        )
    processor = cast(BatchProcessor, request.app.state.processor)
    clock = cast(Clock, request.app.state.clock)
    entry = _entry(request, admin, "customer.merge", customer_id, {"absorbed": len(body.absorb)})
    await processor.merge_by_hand(
        customer_id, body.absorb, clock(), f"api-key:{admin.key_id}", entry=entry
    )
    return await _answer(request, customer_id)


@router.post(
    "/v1/customers/{customer_id}/unmerge",
    response_model=CustomerOut,
    responses={**RESPONSES, 422: {"model": Problem}},
)
async def unmerge(
    customer_id: PathId, body: UnmergeIn, request: Request, session: SessionDep, admin: Admin
) -> Response:
    """Split customers merged into this one off again: each gets back the facts and
    identifiers that came with its id and is re-evaluated (reason `unmerge`); the two
    are kept apart from now on (only an explicit merge joins them again)."""
    known = await _status(session, [customer_id])
    if customer_id not in known:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    carriers = await _carriers(request, session, body)
    if carriers:  # of the ids seen with the identifiers, those merged into this customer
        carriers = list(
            await session.scalars(
                text("SELECT id FROM customers WHERE id = ANY(:c) AND merged_into = :s"),
                {"c": carriers, "s": customer_id},
            )
        )
    ids = list(dict.fromkeys([*body.customer_ids, *sorted(carriers)]))
    await session.rollback()
    if not ids:
        raise Conflict(f"no id merged into {customer_id!r} came with those identifiers")
    processor = cast(BatchProcessor, request.app.state.processor)
    clock = cast(Clock, request.app.state.clock)
    entry = _entry(request, admin, "customer.unmerge", customer_id, {"split": len(ids)})
    try:
        await processor.unmerge(customer_id, ids, clock(), f"api-key:{admin.key_id}", entry=entry)
    except graph.NotMergedInto as exc:
        raise Conflict(str(exc)) from exc
    return await _answer(request, customer_id)


@router.get(
    "/v1/identities/ambiguous",
    response_model=list[AmbiguousIdentifier],
    responses=ADMIN_ONLY,
)
async def list_ambiguous(
    session: SessionDep,
    admin: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AmbiguousIdentifier]:
    """Identifiers seen with more customers than CLASSIFIER_IDENTITY_AMBIGUOUS_AFTER (a
    switchboard number, an info@ mailbox): they merge nothing. Most shared first."""
    return [
        AmbiguousIdentifier(kind=k, digest=d, customers=n)
        for k, d, n in await graph.ambiguous(session, limit)
    ]
