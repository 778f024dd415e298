"""Erasure with a receipt, lifting a suppression, and a customer's export (admin)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from classifier import audit, facts_log
from classifier.auth import ADMIN_ONLY, Principal, ReadAccess, require_admin
from classifier.clock import Clock
from classifier.config import ClassifierSettings
from classifier.db import SessionDep
from classifier.engine import CustomerFacts, from_micros
from classifier.errors import ClassifierError, CustomerNotFound, NotFound
from classifier.identity import identifiers
from classifier.privacy.publisher import ActivityPublisher
from classifier.processing.batch import BatchProcessor
from eventschemas.events import (
    CustomerErasureRequested,
    CustomerId,
    Identity,
    suppression_digest,
)
from eventschemas.problems import Problem

router = APIRouter(tags=["privacy"], dependencies=[ReadAccess])
Admin = Annotated[Principal, Depends(require_admin)]


class NoIdentityKey(ClassifierError):
    status = 503
    slug = "identity-key-missing"
    title = "CLASSIFIER_IDENTITY_KEY is not set: identifiers cannot be matched"


class Target(BaseModel):
    """Exactly one of: a customer id (a CRM record's too, e.g. hubspot-contact-501), an
    e-mail address or a phone number (any common spelling)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId | None = None
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _one(self) -> Target:
        given = [n for n in ("customer_id", "email", "phone") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of customer_id, email, phone")
        return self


class ErasureOut(BaseModel):
    id: str
    status: str = Field(description="queued, completed")
    requested_at: datetime
    completed_at: datetime | None
    requested_by: str
    erased: dict[str, Any] = Field(
        description="Rows erased per kind and ids/identifiers suppressed (no personal data)."
    )


def _kind(target: Target) -> str:
    return "customer" if target.customer_id else ("email" if target.email else "phone")


def _key(request: Request) -> bytes:
    settings = cast(ClassifierSettings, request.app.state.settings)
    if settings.identity_key is None:
        raise NoIdentityKey("set CLASSIFIER_IDENTITY_KEY to the key ingest uses")
    return settings.identity_key.get_secret_value().encode()


def _digests(target: Target, key: bytes, region: str) -> Identity | None:
    """The identity digests of an e-mail or phone target, normalised as ingest does."""
    if target.email:
        return Identity(email_hash=identifiers.email_digest(key, target.email))
    if target.phone:
        return Identity(phone_hash=identifiers.phone_digest(key, target.phone, region))
    return None


async def _subject(session: AsyncSession, target: Target, identity: Identity | None) -> str:
    """The customer id the request is keyed by: the one given, the customer the
    identifier leads to, else the id ingest would derive from it."""
    if target.customer_id:
        return target.customer_id
    assert identity is not None
    kind, digest = (
        ("email", identity.email_hash) if identity.email_hash else ("phone", identity.phone_hash)
    )
    assert digest is not None
    found = await session.scalar(
        text(
            "SELECT COALESCE(c.merged_into, c.id) FROM identity_links l "
            "JOIN customers c ON c.id = l.customer_id WHERE l.kind = :k AND l.digest = :d"
        ),
        {"k": kind, "d": digest},
    )
    return str(found) if found else f"id-{kind[0]}-{digest[:24]}"


async def _merged_with(session: AsyncSession, subject: str) -> tuple[list[str], list[str]]:
    """The other ids merged with `subject` now, and all their identity digests."""
    ids = list(
        await session.scalars(
            text(
                "SELECT id FROM customers WHERE id <> :s AND (id = (SELECT COALESCE(merged_into, "
                "id) FROM customers WHERE id = :s) OR merged_into = (SELECT COALESCE("
                "merged_into, id) FROM customers WHERE id = :s)) ORDER BY id LIMIT 1000"
            ),
            {"s": subject},
        )
    )
    rows = await session.execute(
        text(
            "SELECT kind, digest FROM identity_links WHERE customer_id = ANY(:ids) "
            "ORDER BY kind, digest LIMIT 1000"
        ),
        {"ids": [subject, *ids]},
    )
    return ids, [f"{k}:{d}" for k, d in rows]


def _out(row: Any) -> ErasureOut:
    return ErasureOut(
        id=str(row.id),
        status=row.status,
        requested_at=row.requested_at,
        completed_at=row.completed_at,
        requested_by=row.requested_by,
        erased=dict(row.erased),
    )


async def _receipt(session: AsyncSession, erasure_id: uuid.UUID) -> ErasureOut:
    row = (
        await session.execute(
            text(
                "SELECT id, status, requested_at, completed_at, requested_by, erased "
                "FROM erasures WHERE id = :id"
            ),
            {"id": erasure_id},
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no erasure {erasure_id}")
    return _out(row)


@router.post(
    "/v1/erasures",
    status_code=202,
    response_model=ErasureOut,
    responses={**ADMIN_ONLY, 422: {"model": Problem}, 503: {"model": Problem}},
)
async def request_erasure(
    body: Target, request: Request, response: Response, session: SessionDep, admin: Admin
) -> ErasureOut:
    """Erase a customer, found by its id, e-mail or phone, with every id merged into it:
    facts, state, classes, explanations, history, overrides, identity rows, merge
    records and change rows go; its ids and identifiers are suppressed (later events
    are dropped); `customer.erased` goes to the change topic. Answers with the receipt
    (`Location`); the worker completes it."""
    key = _key(request)
    settings = cast(ClassifierSettings, request.app.state.settings)
    identity = _digests(body, key, settings.default_phone_region)
    subject = await _subject(session, body, identity)
    also_ids, also_digests = await _merged_with(session, subject)
    clock = cast(Clock, request.app.state.clock)
    erasure_id = uuid.uuid4()
    actor = audit.actor_of(admin)
    event = CustomerErasureRequested(
        customer_id=subject,
        identity=identity,
        erasure_id=str(erasure_id),
        requested_at=from_micros(clock()),
        requested_by=actor,
        also_ids=also_ids,
        also_digests=also_digests,
    )
    # The receipt first (queued), then the request on the topic: a receipt without a
    # request is a failed one (status stays queued and the 503 says so).
    await session.execute(
        text(
            "INSERT INTO erasures (id, target_kind, status, requested_by, requested_at) "
            "VALUES (:id, :kind, 'queued', :by, :at)"
        ),
        {
            "id": erasure_id,
            "kind": _kind(body),
            "by": actor,
            "at": event.requested_at,
        },
    )
    await audit.record(
        session,
        actor,
        "customer.erasure",
        audit.customer_ref(settings, subject),
        {"erasure_id": str(erasure_id), "named_by": _kind(body), "ids": 1 + len(also_ids)},
    )
    await session.commit()
    envelope = event.to_envelope("urn:customer-classifier:api")
    await cast(ActivityPublisher, request.app.state.activity_publisher).publish(envelope)
    # Carried out now as well: the receipt does not wait behind the worker's backlog
    # (the worker, meeting the event, finds it completed; a replay erases from it).
    await cast(BatchProcessor, request.app.state.processor).erase_now(event, envelope.id)
    response.headers["Location"] = f"/v1/erasures/{erasure_id}"
    return await _receipt(session, erasure_id)


@router.get(
    "/v1/erasures/{erasure_id}",
    response_model=ErasureOut,
    responses={**ADMIN_ONLY, 404: {"model": Problem}},
)
async def get_erasure(erasure_id: uuid.UUID, session: SessionDep, admin: Admin) -> ErasureOut:
    """An erasure's receipt: status, when requested and completed, what was erased."""
    return await _receipt(session, erasure_id)


class Lifted(BaseModel):
    lifted: int = Field(description="Suppressions lifted (0: none was active).")


@router.post(
    "/v1/suppressions:lift",
    response_model=Lifted,
    responses={**ADMIN_ONLY, 422: {"model": Problem}},
)
async def lift_suppression(
    body: Target, request: Request, session: SessionDep, admin: Admin
) -> Lifted:
    """The person came back with consent: events of this customer id, e-mail or phone
    are taken again from now on (nothing erased comes back)."""
    key = _key(request)
    settings = cast(ClassifierSettings, request.app.state.settings)
    identity = _digests(body, key, settings.default_phone_region)
    if body.customer_id:
        pair = ("customer", suppression_digest(key, "customer", body.customer_id))
    elif identity is not None and identity.email_hash:
        pair = ("email", suppression_digest(key, "email", identity.email_hash))
    else:
        assert identity is not None
        assert identity.phone_hash is not None
        pair = ("phone", suppression_digest(key, "phone", identity.phone_hash))
    result = await session.execute(
        text(
            "UPDATE suppressions SET lifted_at = now(), lifted_by = :by "
            "WHERE kind = :k AND digest = :d AND lifted_at IS NULL"
        ),
        {"k": pair[0], "d": pair[1], "by": audit.actor_of(admin)},
    )
    lifted = int(getattr(result, "rowcount", 0) or 0)
    if lifted:
        await audit.record(
            session,
            audit.actor_of(admin),
            "suppression.lift",
            audit.customer_ref(settings, body.customer_id) if body.customer_id else None,
            {"kind": pair[0]},
        )
    await session.commit()
    return Lifted(lifted=lifted)


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result]


@router.get(
    "/v1/customers/{customer_id}/export",
    responses={**ADMIN_ONLY, 404: {"model": Problem}},
)
async def export_customer(
    customer_id: Annotated[str, Path(min_length=1, max_length=128)],
    session: SessionDep,
    admin: Admin,
) -> Response:
    """Everything held on a customer, as one JSON document: the stored state (facts,
    classes with explanations, features, overrides, aggregates), the facts log, the
    class history and changes, the identifiers (as digests) and merges, for it and
    every id merged into it."""
    row = (
        await session.execute(
            text("SELECT COALESCE(merged_into, id) AS id FROM customers WHERE id = :c"),
            {"c": customer_id},
        )
    ).one_or_none()
    if row is None:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    root = row.id
    ids = [
        root,
        *list(
            await session.scalars(
                text("SELECT id FROM customers WHERE merged_into = :r ORDER BY id"), {"r": root}
            )
        ),
    ]
    customer = (
        (await session.execute(text("SELECT * FROM customers WHERE id = :r"), {"r": root}))
        .mappings()
        .one()
    )
    facts = {root: CustomerFacts.from_doc(root, customer["facts"])}
    await facts_log.catch_up(session, facts, {root: customer["facts_through"]})
    state = {k: v for k, v in customer.items() if k not in ("facts", "facts_through")}
    document = {
        "customer_id": root,
        "asked_for": customer_id,
        "ids": ids,
        "state": state | {"facts": facts[root].to_doc()},
        "facts_log": _rows(
            await session.execute(
                text(
                    "SELECT kind, fact_key, at, seen, body, event_id, origin_id, recorded_at "
                    "FROM customer_facts WHERE customer_id = ANY(:ids) ORDER BY id"
                ),
                {"ids": ids},
            )
        ),
        "class_history": _rows(
            await session.execute(
                text(
                    'SELECT customer_id, dimension, "class", valid_from, valid_to, reason, '
                    "change_id, scheme_version FROM class_history WHERE customer_id = ANY(:ids) "
                    "ORDER BY customer_id, dimension, valid_from"
                ),
                {"ids": ids},
            )
        ),
        "class_changes": _rows(
            await session.execute(
                text(
                    "SELECT change_id, customer_id, dimension, old_class, new_class, reason, "
                    "event_id, rule, scheme_version, occurred_at, published_at "
                    "FROM class_changes WHERE customer_id = ANY(:ids) ORDER BY seq"
                ),
                {"ids": ids},
            )
        ),
        "identifiers": _rows(
            await session.execute(
                text(
                    "SELECT kind, digest, ambiguous, created_at FROM identity_links "
                    "WHERE customer_id = ANY(:ids) ORDER BY kind, digest"
                ),
                {"ids": ids},
            )
        ),
        "merges": _rows(
            await session.execute(
                text(
                    "SELECT survivor_id, absorbed_id, cause, event_id, actor, merged_at, "
                    "undone_at, undone_by FROM customer_merges "
                    "WHERE survivor_id = ANY(:ids) OR absorbed_id = ANY(:ids) ORDER BY id"
                ),
                {"ids": ids},
            )
        ),
    }
    return Response(
        orjson.dumps(document, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS, default=str),
        media_type="application/json",
    )
