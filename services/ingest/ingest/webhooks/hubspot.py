"""`hubspot`: HubSpot webhook batches (arrays of subscription events, v3 signature).

Contact and company events become `crm.contact.updated` / `crm.company.updated`
for customers `hubspot-contact-<objectId>` / `hubspot-company-<objectId>`; a
property change carries that one property (e-mail and phone go to the
identity, as keyed digests). `contact.merge` / `company.merge` become
`crm.contact.merged` / `crm.company.merged`: the customer of `primaryObjectId`
survives and absorbs those of `mergedObjectIds`; `newObjectId` (the record
HubSpot made of the merge, when it made one) is its CRM record id. Deal events
name only the deal, not its contact, so they are acknowledged and listed as
ignored (HubSpot would otherwise retry them); so are plain deletions
(`contact.deletion`: the record left the CRM, the customer's history stays)
and association changes, which do not change classes.

`contact.privacyDeletion` is HubSpot's GDPR delete (sent besides the plain
`contact.deletion`): it becomes `customer.erasure_requested` for customer
`hubspot-contact-<objectId>`, requested by `crm/hubspot`, with an erasure id
derived from the portal, objectId and eventId, so a retried delivery is one
request with one receipt.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from eventschemas.events import (
    CrmCompanyMerged,
    CrmCompanyUpdated,
    CrmContactMerged,
    CrmContactUpdated,
    CustomerErasureRequested,
)
from ingest.config import IngestSettings
from ingest.errors import InvalidInput
from ingest.orders.service import check_not_future
from ingest.webhooks.common import (
    MAX_WEBHOOK_ITEMS,
    Mapped,
    erasure_id,
    from_epoch_ms,
    split_fields,
)

# objectTypeId of HubSpot's generic `object.*` subscriptions.
OBJECT_TYPES = {"0-1": "contact", "0-2": "company", "0-3": "deal"}
HANDLED = {"creation", "propertyChange"}
MERGE = "merge"
PRIVACY_DELETION = "privacyDeletion"
# CrmContactMerged.absorbed_ids holds at most this many.
MAX_MERGED_OBJECTS = 100


class HubSpotEvent(BaseModel):
    """One subscription event as HubSpot documents it (unknown fields are kept aside)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    event_id: int
    subscription_id: int | None = None
    portal_id: int
    app_id: int | None = None
    occurred_at: int = Field(description="Unix milliseconds.")
    subscription_type: str = Field(min_length=3, max_length=100)
    attempt_number: int | None = None
    # Every event names its object, except that a merge may name only the primary.
    object_id: int | None = None
    object_type_id: str | None = None
    change_source: str | None = None
    property_name: str | None = None
    property_value: str | None = None
    # Merges (`*.merge`): the surviving object, the objects merged into it, and the
    # object HubSpot created of the merge when it created one.
    primary_object_id: int | None = None
    merged_object_ids: list[int] | None = None
    new_object_id: int | None = None
    number_of_properties_moved: int | None = None


def parse_batch(body: Any) -> list[HubSpotEvent]:
    if not isinstance(body, list):
        raise InvalidInput("body", "expected a JSON array of HubSpot subscription events")
    if not body or len(body) > MAX_WEBHOOK_ITEMS:
        raise InvalidInput("body", f"expected 1 to {MAX_WEBHOOK_ITEMS} events, got {len(body)}")
    events = []
    for index, raw in enumerate(body):
        try:
            events.append(HubSpotEvent.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"[{index}].{field}", first["msg"]) from exc
        if events[-1].object_id is None and not events[-1].subscription_type.endswith(".merge"):
            raise InvalidInput(f"[{index}].objectId", "Field required")
    return events


def _source_event_id(item: HubSpotEvent, object_id: int | None) -> str:
    # eventId alone is not guaranteed unique: qualify it with what it is about.
    return (
        f"{item.portal_id}:{item.subscription_type}:{object_id}:"
        f"{item.property_name or ''}:{item.occurred_at}:{item.event_id}"
    )[:128]


def map_merge(settings: IngestSettings, index: int, item: HubSpotEvent, obj: str) -> Mapped:
    """A `contact.merge` / `company.merge` event -> crm.contact.merged / crm.company.merged."""
    where = f"[{index}]"
    primary = item.primary_object_id if item.primary_object_id is not None else item.object_id
    if primary is None:
        raise InvalidInput(f"{where}.primaryObjectId", "required for a merge")
    if not item.merged_object_ids:
        raise InvalidInput(f"{where}.mergedObjectIds", "required for a merge: a non-empty array")
    absorbed = list(dict.fromkeys(i for i in item.merged_object_ids if i != primary))
    if not absorbed:
        raise InvalidInput(f"{where}.mergedObjectIds", "names no object besides primaryObjectId")
    if item.new_object_id is not None and item.new_object_id not in (primary, *absorbed):
        # HubSpot's later events name the merged record by its new id: it becomes an
        # alias of the survivor (the classifier makes an unknown absorbed id one).
        absorbed.append(item.new_object_id)
    if len(absorbed) > MAX_MERGED_OBJECTS:
        raise InvalidInput(
            f"{where}.mergedObjectIds", f"at most {MAX_MERGED_OBJECTS} objects per merge"
        )
    merged_at = from_epoch_ms(item.occurred_at, f"{where}.occurredAt")
    check_not_future(settings, f"{where}.occurredAt", merged_at)
    model: type[CrmContactMerged] = CrmCompanyMerged if obj == "company" else CrmContactMerged
    event = model(
        customer_id=f"hubspot-{obj}-{primary}",
        absorbed_ids=[f"hubspot-{obj}-{object_id}" for object_id in absorbed],
        crm_record_id=str(item.new_object_id) if item.new_object_id is not None else None,
        merged_at=merged_at,
        source_event_id=_source_event_id(item, primary),
    )
    return Mapped(event=event)


def map_privacy_deletion(settings: IngestSettings, index: int, item: HubSpotEvent) -> Mapped:
    """A `contact.privacyDeletion` -> customer.erasure_requested for that contact."""
    requested_at = from_epoch_ms(item.occurred_at, f"[{index}].occurredAt")
    check_not_future(settings, f"[{index}].occurredAt", requested_at)
    event = CustomerErasureRequested(
        customer_id=f"hubspot-contact-{item.object_id}",
        erasure_id=erasure_id("hubspot", f"{item.portal_id}:{item.object_id}:{item.event_id}"),
        requested_at=requested_at,
        requested_by="crm/hubspot",
    )
    return Mapped(event=event)


def map_hubspot(settings: IngestSettings, body: Any) -> list[Mapped]:
    mapped = []
    for index, item in enumerate(parse_batch(body)):
        obj, _, action = item.subscription_type.partition(".")
        if obj == "object":
            obj = OBJECT_TYPES.get(item.object_type_id or "", "unknown")
        if obj == "contact" and action == PRIVACY_DELETION:
            mapped.append(map_privacy_deletion(settings, index, item))
            continue
        if obj in ("contact", "company") and action == MERGE:
            mapped.append(map_merge(settings, index, item, obj))
            continue
        if obj not in ("contact", "company") or action not in HANDLED:
            mapped.append(Mapped(ignored=f"{item.subscription_type} does not change classes"))
            continue
        occurred = from_epoch_ms(item.occurred_at, f"[{index}].occurredAt")
        check_not_future(settings, f"[{index}].occurredAt", occurred)
        fields = {item.property_name: item.property_value} if item.property_name else {}
        try:
            attributes, identity = split_fields(fields, settings)
        except InvalidInput as exc:
            mapped.append(Mapped(ignored=f"unusable value: {exc.detail}"))
            continue
        model: type[CrmContactUpdated] = (
            CrmCompanyUpdated if obj == "company" else CrmContactUpdated
        )
        customer_id = f"hubspot-{obj}-{item.object_id}"
        event = model(
            customer_id=customer_id,
            identity=identity,
            crm_record_id=str(item.object_id),
            updated_at=occurred,
            attributes=attributes,
            source_event_id=_source_event_id(item, item.object_id),
        )
        mapped.append(Mapped(event=event))
    return mapped
