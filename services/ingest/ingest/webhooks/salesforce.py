"""`salesforce`: Outbound Messages, SOAP notifications sent by a workflow or flow.

The XML is parsed with defusedxml and any DOCTYPE is refused, so no entity
(external or not) is ever expanded. The message's OrganizationId must be one
of the configured org ids. Each Notification becomes one event whose id comes
from the Notification Id, which Salesforce keeps across its retries:

- Contact, Lead -> crm.contact.updated for `salesforce-<record Id>`;
- Account -> crm.company.updated for `salesforce-<Account Id>`;
- Opportunity with StageName and AccountId -> crm.deal.stage_changed for the account.

Salesforce treats anything but the SOAP acknowledgement as a failure and
retries, so the answer after the broker acknowledged is `ACK_RESPONSE`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from pydantic import TypeAdapter, ValidationError

from eventschemas.events import CrmCompanyUpdated, CrmContactUpdated, CrmDealStageChanged
from eventschemas.limits import Instant
from ingest.config import IngestSettings
from ingest.errors import InvalidInput
from ingest.orders.service import check_not_future
from ingest.webhooks.auth import ForbiddenSender
from ingest.webhooks.common import MAX_WEBHOOK_ITEMS, Mapped, split_fields

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
NS = {"soapenv": SOAP_NS, "om": OUTBOUND_NS}

ACK_RESPONSE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}">'
    "<soapenv:Body>"
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body>"
    "</soapenv:Envelope>"
)
_TIMESTAMP = TypeAdapter(Instant)
MODIFIED_FIELDS = ("LastModifiedDate", "SystemModstamp", "CreatedDate")
# Fields that describe the record rather than the customer.
SKIPPED_FIELDS = {"id", "lastmodifieddate", "systemmodstamp", "createddate", "isdeleted"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_message(body: bytes) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """Return the org id and (notification id, sObject type, fields) per notification."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InvalidInput("body", "XML with a DOCTYPE or entities is refused") from exc
    except ParseError as exc:
        raise InvalidInput("body", f"invalid XML: {exc}") from exc
    notifications = root.find("soapenv:Body/om:notifications", NS)
    if root.tag != f"{{{SOAP_NS}}}Envelope" or notifications is None:
        raise InvalidInput(
            "body", "not a Salesforce outbound message (soapenv:Envelope/notifications)"
        )
    org_id = (notifications.findtext("om:OrganizationId", default="", namespaces=NS)).strip()
    if not org_id:
        raise InvalidInput("OrganizationId", "missing")
    items = []
    for notification in notifications.findall("om:Notification", NS):
        notification_id = notification.findtext("om:Id", default="", namespaces=NS).strip()
        sobject = notification.find("om:sObject", NS)
        if not notification_id or sobject is None:
            raise InvalidInput("Notification", "each Notification needs an Id and an sObject")
        sobject_type = _local(sobject.get(f"{{{XSI_NS}}}type", "")).split(":")[-1]
        items.append((notification_id, sobject_type, _fields(sobject)))
    if not items or len(items) > MAX_WEBHOOK_ITEMS:
        raise InvalidInput("Notification", f"expected 1 to {MAX_WEBHOOK_ITEMS} notifications")
    return org_id, items


def _fields(sobject: Element) -> dict[str, str]:
    fields = {}
    for child in sobject:
        if child.get(f"{{{XSI_NS}}}nil") == "true" or len(child):
            continue
        fields[_local(child.tag)] = (child.text or "").strip()
    return fields


def _modified_at(fields: dict[str, str]) -> datetime:
    for name in MODIFIED_FIELDS:
        if fields.get(name):
            try:
                return _TIMESTAMP.validate_python(fields[name])
            except ValidationError as exc:
                message = "; ".join(e["msg"] for e in exc.errors())
                raise InvalidInput(name, f"not an ISO 8601 instant with offset: {message}") from exc
    return datetime.now(UTC)


def check_organization(settings: IngestSettings, org_id: str) -> None:
    if org_id[:15] not in settings.salesforce_orgs():
        raise ForbiddenSender("OrganizationId is not a configured Salesforce org")


def map_salesforce(settings: IngestSettings, body: bytes) -> list[Mapped]:
    org_id, items = parse_message(body)
    check_organization(settings, org_id)
    mapped = []
    for notification_id, sobject_type, fields in items:
        record_id = fields.get("Id")
        if not record_id:
            mapped.append(Mapped(ignored=f"{sobject_type} notification without the record Id"))
            continue
        modified = _modified_at(fields)
        check_not_future(settings, "LastModifiedDate", modified)
        source_event_id = f"{org_id}:{notification_id}"
        if sobject_type == "Opportunity":
            mapped.append(_opportunity(fields, modified, source_event_id))
            continue
        if sobject_type not in ("Contact", "Lead", "Account"):
            mapped.append(Mapped(ignored=f"{sobject_type} records do not change classes"))
            continue
        if sobject_type != "Account":
            fields = {k: v for k, v in fields.items() if k != "Name"}  # a person's name
        kept = {k: v for k, v in fields.items() if k.lower() not in SKIPPED_FIELDS}
        try:
            attributes, identity = split_fields(kept, settings)
        except InvalidInput as exc:
            mapped.append(Mapped(ignored=f"unusable value: {exc.detail}"))
            continue
        model: type[CrmContactUpdated] = (
            CrmCompanyUpdated if sobject_type == "Account" else CrmContactUpdated
        )
        mapped.append(
            Mapped(
                event=model(
                    customer_id=f"salesforce-{record_id}",
                    identity=identity,
                    crm_record_id=record_id,
                    updated_at=modified,
                    attributes={"salesforce_object": sobject_type, **attributes},
                    source_event_id=source_event_id,
                )
            )
        )
    return mapped


def _opportunity(fields: dict[str, Any], modified: datetime, source_event_id: str) -> Mapped:
    stage, account = fields.get("StageName"), fields.get("AccountId")
    if not stage or not account:
        return Mapped(ignored="Opportunity without StageName and AccountId")
    return Mapped(
        event=CrmDealStageChanged(
            customer_id=f"salesforce-{account}",
            deal_id=fields["Id"],
            stage=stage.strip().lower().replace(" ", "_")[:64],
            changed_at=modified,
            source_event_id=source_event_id,
        )
    )
