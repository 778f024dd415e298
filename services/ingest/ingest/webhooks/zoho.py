"""`zoho`: Zoho CRM workflow webhooks, authenticated with a shared token.

Zoho CRM lets the admin choose the webhook's parameters (merge fields of the
module, plus custom parameters); it does not sign requests. Configure the
webhook with these parameter names, sent as a form (x-www-form-urlencoded) or
as a JSON object:

    token          the shared token (or send it in the X-Zoho-Webhook-Token header)
    module         Contacts, Leads, Accounts or Deals
    id             ${<Module>.<Module> Id}
    modified_time  ${<Module>.Modified Time}   (ISO 8601 with offset)
    email, phone, mobile            optional; normalised, never logged
    stage, contact_id, account_id   Deals: the stage and whose deal it is
    any other parameter             kept as a CRM attribute (Industry, No_of_Employees, ...)

The event id comes from module, id and modified_time, so a retried call
(same record version) yields the same id.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eventschemas.events import (
    ActivityEvent,
    CrmCompanyUpdated,
    CrmContactUpdated,
    CrmDealStageChanged,
    NaturalId,
)
from eventschemas.limits import Instant
from ingest.config import IngestSettings
from ingest.errors import InvalidInput
from ingest.orders.service import check_not_future
from ingest.webhooks.common import Mapped, split_fields

TOKEN_HEADER = "X-Zoho-Webhook-Token"
MODULES = {"contacts": "Contacts", "leads": "Leads", "accounts": "Accounts", "deals": "Deals"}


class ZohoRecord(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    module: str = Field(min_length=1, max_length=64)
    id: NaturalId
    modified_time: Instant
    stage: str | None = Field(default=None, max_length=64)
    contact_id: NaturalId | None = None
    account_id: NaturalId | None = None


def map_zoho(settings: IngestSettings, fields: dict[str, Any]) -> list[Mapped]:
    try:
        record = ZohoRecord.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(".".join(str(p) for p in first["loc"]), first["msg"]) from exc
    module = MODULES.get(record.module.lower())
    if module is None:
        return [Mapped(ignored=f"module {record.module!r} does not change classes")]
    check_not_future(settings, "modified_time", record.modified_time)
    source_event_id = f"{module}:{record.id}:{record.modified_time.isoformat()}"
    event: ActivityEvent
    if module == "Deals":
        owner = record.contact_id or record.account_id
        if not record.stage or not owner:
            return [Mapped(ignored="a Deals call needs stage and contact_id or account_id")]
        event = CrmDealStageChanged(
            customer_id=f"zoho-{owner}",
            deal_id=record.id,
            stage=record.stage.lower().replace(" ", "_"),
            changed_at=record.modified_time,
            source_event_id=source_event_id,
        )
        return [Mapped(event=event)]
    extra = dict(record.model_extra or {})
    attributes, identity = split_fields(extra, settings)
    model = CrmCompanyUpdated if module == "Accounts" else CrmContactUpdated
    event = model(
        customer_id=f"zoho-{record.id}",
        identity=identity,
        crm_record_id=record.id,
        updated_at=record.modified_time,
        attributes={"zoho_module": module, **attributes},
        source_event_id=source_event_id,
    )
    return [Mapped(event=event)]
