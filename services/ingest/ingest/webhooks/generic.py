"""`generic`: our own documented webhook format, for CRMs without a native mapping.

    POST /v1/webhooks/generic
    X-Webhook-Timestamp: <Unix seconds>
    X-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

    {"events": [
      {"type": "contact.updated", "id": "evt-1", "customer_id": "cust-42",
       "occurred_at": "2026-11-20T10:00:00+08:00", "attributes": {"industry": "retail"},
       "tags": ["vip"], "email": "Ann@Example.com", "phone": "138 0013 8000"},
      {"type": "deal.stage_changed", "id": "evt-2", "customer_id": "cust-42",
       "deal_id": "D-7", "stage": "negotiation", "amount": "5000", "currency": "CNY",
       "occurred_at": "2026-11-20T10:05:00+08:00"},
      {"type": "contact.merged", "id": "evt-3", "customer_id": "cust-42",
       "absorbed_customer_ids": ["cust-43", "cust-44"],
       "merged_at": "2026-11-20T10:10:00+08:00", "revision": 0}
    ]}

`contact.merged` (and `company.merged`) says the sender merged records: the
customers `absorbed_customer_ids` (1 to 100, never the survivor itself) are
one customer with `customer_id` from now on. Its `id` is optional: without
one, the survivor, the absorbed ids and `merged_at` name the merge.

`id` is the sender's id of the notification: a retried delivery with the same
id yields the same event id. The batch is validated whole (one bad event, and
the request is refused with the field named), so a sender can simply retry.

`contact.erased` asks for the erasure of a customer (by `customer_id`, or by
`email`/`phone`, which travel only as keyed digests) with the sender's `id` of
the deletion and `occurred_at`: it becomes `customer.erasure_requested`,
requested by `crm/generic`, with an erasure id derived from `id` and the
customer, so a retried delivery is one request with one receipt.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eventschemas.events import (
    ActivityEvent,
    CrmCompanyMerged,
    CrmCompanyUpdated,
    CrmContactMerged,
    CrmContactUpdated,
    CrmDealStageChanged,
    CustomerErasureRequested,
    CustomerIdIn,
    NaturalId,
)
from eventschemas.limits import Instant, RevisionIn
from ingest.config import IngestSettings
from ingest.errors import InvalidInput
from ingest.identity import CustomerRef
from ingest.orders.schemas import Amount, CurrencyIn
from ingest.orders.service import check_not_future, to_base_currency
from ingest.webhooks.common import MAX_WEBHOOK_ITEMS, Mapped, erasure_id, split_fields

Scalar = str | int | float | bool | None


class GenericContactUpdated(CustomerRef):
    model_config = ConfigDict(extra="forbid")

    type: Literal["contact.updated"]
    id: NaturalId = Field(description="The sender's id of this notification.")
    occurred_at: Instant
    attributes: dict[str, Scalar] = Field(default_factory=dict)
    tags: list[Annotated[str, Field(max_length=64)]] | None = None


class GenericCompanyUpdated(GenericContactUpdated):
    type: Literal["company.updated"]  # type: ignore[assignment]


class GenericDealStageChanged(CustomerRef):
    model_config = ConfigDict(extra="forbid")

    type: Literal["deal.stage_changed"]
    id: NaturalId
    occurred_at: Instant
    deal_id: NaturalId
    stage: str = Field(min_length=1, max_length=64)
    amount: Amount | None = None
    currency: CurrencyIn | None = None


class GenericContactMerged(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["contact.merged"]
    id: NaturalId | None = Field(default=None, description="The sender's id of this merge.")
    customer_id: CustomerIdIn = Field(description="The surviving customer.")
    absorbed_customer_ids: list[CustomerIdIn] = Field(
        min_length=1, max_length=100, description="The customers merged into it."
    )
    merged_at: Instant
    revision: RevisionIn = 0


class GenericCompanyMerged(GenericContactMerged):
    type: Literal["company.merged"]  # type: ignore[assignment]


class GenericContactErased(CustomerRef):
    model_config = ConfigDict(extra="forbid")

    type: Literal["contact.erased"]
    id: NaturalId = Field(description="The sender's id of this deletion.")
    occurred_at: Instant


GenericEvent = Annotated[
    GenericContactUpdated
    | GenericCompanyUpdated
    | GenericDealStageChanged
    | GenericContactMerged
    | GenericCompanyMerged
    | GenericContactErased,
    Field(discriminator="type"),
]


class GenericBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[GenericEvent] = Field(min_length=1, max_length=MAX_WEBHOOK_ITEMS)


def _merged(settings: IngestSettings, where: str, item: GenericContactMerged) -> CrmContactMerged:
    check_not_future(settings, f"{where}.merged_at", item.merged_at)
    field = f"{where}.absorbed_customer_ids"
    if item.customer_id in item.absorbed_customer_ids:
        raise InvalidInput(field, "must not name the surviving customer_id")
    if len(set(item.absorbed_customer_ids)) < len(item.absorbed_customer_ids):
        raise InvalidInput(field, "names a customer twice")
    model: type[CrmContactMerged] = (
        CrmCompanyMerged if isinstance(item, GenericCompanyMerged) else CrmContactMerged
    )
    return model(
        customer_id=item.customer_id,
        revision=item.revision,
        absorbed_ids=item.absorbed_customer_ids,
        merged_at=item.merged_at,
        source_event_id=item.id,
    )


def map_generic(settings: IngestSettings, body: Any) -> list[Mapped]:
    """Validate the whole batch, then build one event per item."""
    batch = GenericBatch.model_validate(body)
    mapped = []
    for index, item in enumerate(batch.events):
        where = f"events[{index}]"
        if isinstance(item, GenericContactMerged):
            mapped.append(Mapped(event=_merged(settings, where, item)))
            continue
        check_not_future(settings, f"{where}.occurred_at", item.occurred_at)
        customer_id, identity = item.resolve(settings)
        event: ActivityEvent
        if isinstance(item, GenericContactErased):
            event = CustomerErasureRequested(
                customer_id=customer_id,
                identity=identity,
                erasure_id=erasure_id("generic", f"{item.id}:{customer_id}"),
                requested_at=item.occurred_at,
                requested_by="crm/generic",
            )
        elif isinstance(item, GenericDealStageChanged):
            amount_base = None
            if item.amount is not None:
                if item.currency is None:
                    raise InvalidInput(f"{where}.currency", "required with amount")
                amount_base = to_base_currency(settings, item.amount, item.currency)
            event = CrmDealStageChanged(
                customer_id=customer_id,
                identity=identity,
                deal_id=item.deal_id,
                stage=item.stage,
                amount_base=amount_base,
                changed_at=item.occurred_at,
                source_event_id=item.id,
            )
        else:
            attributes, _ = split_fields(dict(item.attributes), settings)
            model: type[CrmContactUpdated] = (
                CrmCompanyUpdated if isinstance(item, GenericCompanyUpdated) else CrmContactUpdated
            )
            event = model(
                customer_id=customer_id,
                identity=identity,
                crm_record_id=customer_id,
                updated_at=item.occurred_at,
                attributes=attributes,
                tags=item.tags,
                source_event_id=item.id,
            )
        mapped.append(Mapped(event=event))
    return mapped
