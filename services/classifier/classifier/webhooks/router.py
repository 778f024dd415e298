"""Admin endpoints of webhook subscriptions: manage them, read their delivery log,
redeliver, ping. Every change is in the audit trail (`webhook.*`)."""

from __future__ import annotations

import uuid
from typing import Annotated, cast

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status

from classifier.audit import actor_of
from classifier.auth import ADMIN_ONLY, Principal, require_admin
from classifier.config import ClassifierSettings
from classifier.db import SessionDep
from classifier.webhooks import repository, service
from classifier.webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    DeliveryStatus,
    Redelivered,
    RedeliverSince,
    RotateIn,
    SecretOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionPatch,
    delivery_out,
    subscription_out,
)
from eventschemas.problems import Problem

router = APIRouter(
    prefix="/v1", tags=["webhooks"], dependencies=[Depends(require_admin)], responses=ADMIN_ONLY
)
Admin = Annotated[Principal, Depends(require_admin)]
SubscriptionId = Annotated[uuid.UUID, Path(description="A subscription id.")]
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": Problem}}
REFUSED: dict[int | str, dict[str, object]] = {
    422: {"model": Problem, "description": "A bad URL, or a target that is not allowed."}
}


def _settings(request: Request) -> ClassifierSettings:
    return cast(ClassifierSettings, request.app.state.settings)


@router.post("/subscriptions", status_code=status.HTTP_201_CREATED, responses=REFUSED)
async def create_subscription(
    body: SubscriptionIn, request: Request, response: Response, session: SessionDep, admin: Admin
) -> SubscriptionCreated:
    """Subscribe a URL to class changes; the signing secret is in this answer only."""
    row = await service.create(session, _settings(request), body, actor=actor_of(admin))
    await session.commit()
    response.headers["Location"] = f"/v1/subscriptions/{row.id}"
    return SubscriptionCreated(**subscription_out(row).model_dump(), secret=row.secret)


@router.get("/subscriptions")
async def list_subscriptions(session: SessionDep) -> SubscriptionList:
    """Every subscription (secrets are never shown again)."""
    rows = await repository.list_subscriptions(session)
    return SubscriptionList(subscriptions=[subscription_out(r) for r in rows])


@router.get("/subscriptions/{subscription_id}", responses=NOT_FOUND)
async def get_subscription(subscription_id: SubscriptionId, session: SessionDep) -> SubscriptionOut:
    return subscription_out(await service.get(session, subscription_id))


@router.patch("/subscriptions/{subscription_id}", responses={**NOT_FOUND, **REFUSED})
async def update_subscription(
    subscription_id: SubscriptionId,
    body: SubscriptionPatch,
    request: Request,
    session: SessionDep,
    admin: Admin,
) -> SubscriptionOut:
    """Change the URL, the filter or `enabled` (true also re-enables after a 410)."""
    row = await service.update(
        session, _settings(request), subscription_id, body, actor=actor_of(admin)
    )
    await session.commit()
    return subscription_out(row)


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
)
async def delete_subscription(
    subscription_id: SubscriptionId, session: SessionDep, admin: Admin
) -> Response:
    """Delete a subscription with its delivery log; what it is owed is not sent."""
    await service.delete(session, subscription_id, actor=actor_of(admin))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/subscriptions/{subscription_id}/rotate-secret", responses=NOT_FOUND)
async def rotate_secret(
    subscription_id: SubscriptionId,
    request: Request,
    session: SessionDep,
    admin: Admin,
    body: Annotated[RotateIn | None, Body()] = None,
) -> SecretOut:
    """A new signing secret (in this answer only); deliveries carry a signature by each
    of the new and the old secret until the overlap ends."""
    row, secret = await service.rotate_secret(
        session, _settings(request), subscription_id, body or RotateIn(), actor=actor_of(admin)
    )
    await session.commit()
    return SecretOut(secret=secret, previous_secret_expires_at=row.previous_expires_at)


@router.get("/subscriptions/{subscription_id}/deliveries", responses=NOT_FOUND)
async def list_deliveries(
    subscription_id: SubscriptionId,
    session: SessionDep,
    delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    before: Annotated[int | None, Query(ge=1, description="`next_before` of a page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryList:
    """The delivery log, newest first: status, attempts, last response code and latency."""
    await service.get(session, subscription_id)
    rows = await repository.delivery_log(
        session, subscription_id, status=delivery_status, before=before, limit=limit
    )
    more = rows[-1].seq if len(rows) == limit else None
    return DeliveryList(deliveries=[delivery_out(r) for r in rows], next_before=more)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses=NOT_FOUND,
)
async def redeliver(
    delivery_id: Annotated[str, Path(max_length=40)], session: SessionDep, admin: Admin
) -> DeliveryOut:
    """Send one delivery again (same webhook-id; attempts start over)."""
    row = await service.redeliver(session, delivery_id, actor=actor_of(admin))
    await session.commit()
    return delivery_out(row)


@router.post(
    "/subscriptions/{subscription_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses=NOT_FOUND,
)
async def redeliver_since(
    subscription_id: SubscriptionId, body: RedeliverSince, session: SessionDep, admin: Admin
) -> Redelivered:
    """Send again every delivered or dead delivery created since `since`."""
    count = await service.redeliver_since(
        session, subscription_id, body.since, actor=actor_of(admin)
    )
    await session.commit()
    return Redelivered(deliveries=count)


@router.post(
    "/subscriptions/{subscription_id}/ping",
    status_code=status.HTTP_202_ACCEPTED,
    responses=NOT_FOUND,
)
async def ping(subscription_id: SubscriptionId, session: SessionDep, admin: Admin) -> DeliveryOut:
    """Queue a signed `webhook.ping` to the target; its outcome is in the delivery log."""
    row = await service.ping(session, subscription_id, actor=actor_of(admin))
    await session.commit()
    return delivery_out(row)
