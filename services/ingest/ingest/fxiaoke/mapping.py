"""Fxiaoke records -> activity events, as the mapping file says. Pure: no I/O.

Every event id comes from the object, the record id and its
`last_modified_time`, so re-reading a record that did not change publishes
the same ids (the classifier drops them) and a changed record a new one.
Names, addresses and follow-up notes are never read; phone and e-mail go
only into the event's `identity`, as keyed digests of the normalised values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from eventschemas.events import (
    ActivityEvent,
    CrmCompanyUpdated,
    CrmContactUpdated,
    CrmDealStageChanged,
    CrmTouchpointLogged,
    Identity,
    OrderPlaced,
    OrderStatus,
)
from ingest.config import IngestSettings
from ingest.errors import InvalidInput
from ingest.identity import keyed_identity, normalize_email, normalize_phone
from ingest.orders.service import to_base_currency
from ingest.webhooks.common import NUMERIC_ATTRIBUTES

MODIFIED = "last_modified_time"
Kind = Literal["account", "contact", "opportunity", "order", "follow_up"]


class ObjectMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    account_field: str = "account_id"
    attributes: dict[str, str] = Field(default_factory=dict)
    phone_fields: list[str] = Field(default_factory=list)
    email_fields: list[str] = Field(default_factory=list)
    stage_field: str = "sales_stage"
    stages: dict[str, str] = Field(default_factory=dict)
    amount_field: str | None = None
    time_field: str | None = None
    status_field: str | None = None
    statuses: dict[str, OrderStatus] = Field(default_factory=dict)
    type_field: str = "active_record_type"
    owner_field: str = "owner"


class FxiaokeMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    wecom_external_userid_field: str | None = None
    objects: dict[str, ObjectMapping] = Field(min_length=1)

    def ordered(self) -> list[tuple[str, ObjectMapping]]:
        """Objects in sync order: accounts first, so the others find their customer."""
        return sorted(self.objects.items(), key=lambda item: item[1].kind != "account")


def load_mapping(path: Path | None) -> FxiaokeMapping:
    """The mapping file at `path`, or the one shipped with ingest."""
    if path is None:
        text = resources.files("ingest.fxiaoke").joinpath("mapping.yaml").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return FxiaokeMapping.model_validate(yaml.safe_load(text))


@dataclass(frozen=True)
class Mapped:
    """What one record gives: events, an account's customer id, or why it gave nothing."""

    events: tuple[ActivityEvent, ...] = ()
    account: tuple[str, str] | None = None  # (account _id, customer id)
    ignored: str | None = None


def modified_ms(record: dict[str, Any]) -> int:
    return int(record[MODIFIED])


def _instant(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


def _scalar(value: Any) -> Any:
    """Fxiaoke returns lookups and owners as lists: keep the first element."""
    if isinstance(value, list):
        return _scalar(value[0]) if value else None
    return value


def _account_id(record: dict[str, Any], field: str) -> str | None:
    value = record.get(field)
    if isinstance(value, dict):  # related_object style: {"AccountObj": [ids]}
        value = value.get("AccountObj")
    value = _scalar(value)
    return str(value) if value not in (None, "") else None


def _attributes(record: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, attribute in names.items():
        value = _scalar(record.get(field))
        if value is None or value == "" or attribute in out:
            continue
        if attribute in NUMERIC_ATTRIBUTES and isinstance(value, str):
            try:
                value = int(float(value.replace(",", "")))
            except ValueError:
                continue
        elif attribute == "industry" and isinstance(value, str):
            value = value.strip().lower().replace(" ", "_")
        out[attribute] = value
    return out


def _identity(
    record: dict[str, Any], spec: ObjectMapping, settings: IngestSettings
) -> Identity | None:
    region = settings.default_phone_region
    phone = email = None
    for field in spec.phone_fields:
        if phone is None and record.get(field):
            try:
                phone = normalize_phone(str(_scalar(record[field])), region, field=field)
            except InvalidInput:
                continue
    for field in spec.email_fields:
        if email is None and record.get(field):
            try:
                email = normalize_email(str(_scalar(record[field])), field=field)
            except InvalidInput:
                continue
    return keyed_identity(settings.identity_key_bytes(), phone=phone, email=email)


def _amount(record: dict[str, Any], field: str | None) -> Decimal | None:
    if field is None or record.get(field) in (None, ""):
        return None
    try:
        amount = Decimal(str(record[field]))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


class RecordMapper:
    """Maps records of the configured objects; `customers` resolves account ids."""

    def __init__(
        self, settings: IngestSettings, mapping: FxiaokeMapping, customers: dict[str, str]
    ) -> None:
        self._settings = settings
        self._mapping = mapping
        self._customers = customers

    def customer_of(self, account_id: str) -> str:
        return self._customers.get(account_id) or f"fxiaoke-{account_id}"

    def map(self, object_api_name: str, record: dict[str, Any]) -> Mapped:
        spec = self._mapping.objects[object_api_name]
        record_id = str(record.get("_id") or "")
        modified = _instant(record.get(MODIFIED))
        if not record_id or modified is None:
            return Mapped(ignored=f"{object_api_name} record without _id or {MODIFIED}")
        if record.get("is_deleted") is True:
            return Mapped(ignored="deleted record")
        source_id = f"{object_api_name}:{record_id}@{modified_ms(record)}"
        if spec.kind == "account":
            return self._account(record, record_id, modified, source_id, spec)
        account = _account_id(record, spec.account_field)
        if account is None:
            return Mapped(ignored=f"{object_api_name} {record_id} names no account")
        customer = self.customer_of(account)
        match spec.kind:
            case "contact":
                event: ActivityEvent = CrmContactUpdated(
                    customer_id=customer,
                    identity=_identity(record, spec, self._settings),
                    crm_record_id=record_id,
                    updated_at=modified,
                    attributes=_attributes(record, spec.attributes),
                    source_event_id=source_id,
                )
            case "opportunity":
                event = self._opportunity(record, record_id, modified, source_id, spec, customer)
            case "order":
                return self._order(record, record_id, modified, spec, customer)
            case "follow_up":
                owner = _scalar(record.get(spec.owner_field))
                kind = _scalar(record.get(spec.type_field))
                event = CrmTouchpointLogged(
                    customer_id=customer,
                    touchpoint_id=record_id,
                    channel="fxiaoke",
                    kind=str(kind)[:64] if kind not in (None, "") else "follow_up",
                    owner_id=str(owner) if owner not in (None, "") else None,
                    touched_at=_instant(record.get(spec.time_field or "create_time")) or modified,
                    revision=modified_ms(record),
                )
        return Mapped(events=(event,))

    def _account(
        self,
        record: dict[str, Any],
        record_id: str,
        modified: datetime,
        source_id: str,
        spec: ObjectMapping,
    ) -> Mapped:
        link_field = self._mapping.wecom_external_userid_field
        linked = _scalar(record.get(link_field)) if link_field else None
        customer = f"wecom-{linked}" if linked else self.customer_of(record_id)
        self._customers[record_id] = customer
        event = CrmCompanyUpdated(
            customer_id=customer,
            crm_record_id=record_id,
            updated_at=modified,
            attributes=_attributes(record, spec.attributes),
            source_event_id=source_id,
        )
        return Mapped(events=(event,), account=(record_id, customer))

    def _opportunity(
        self,
        record: dict[str, Any],
        record_id: str,
        modified: datetime,
        source_id: str,
        spec: ObjectMapping,
        customer: str,
    ) -> ActivityEvent:
        raw = str(_scalar(record.get(spec.stage_field)) or "").strip()
        stage = spec.stages.get(raw) or raw.lower().replace(" ", "_") or "unknown"
        amount = _amount(record, spec.amount_field)
        return CrmDealStageChanged(
            customer_id=customer,
            deal_id=record_id,
            stage=stage[:64],
            amount_base=(
                None
                if amount is None
                else to_base_currency(self._settings, amount, self._mapping.currency)
            ),
            changed_at=modified,
            source_event_id=source_id,
        )

    def _order(
        self,
        record: dict[str, Any],
        record_id: str,
        modified: datetime,
        spec: ObjectMapping,
        customer: str,
    ) -> Mapped:
        amount = _amount(record, spec.amount_field)
        if amount is None:
            return Mapped(ignored=f"SalesOrder {record_id} without a usable amount")
        raw_status = str(_scalar(record.get(spec.status_field or "")) or "")
        currency = self._mapping.currency
        event = OrderPlaced(
            customer_id=customer,
            order_id=record_id,
            amount=amount,
            currency=currency,
            amount_base=to_base_currency(self._settings, amount, currency),
            base_currency=self._settings.base_currency,
            placed_at=_instant(record.get(spec.time_field or "create_time")) or modified,
            status=spec.statuses.get(raw_status, OrderStatus.PLACED),
            # A changed order is a new revision: the classifier keeps the latest.
            revision=modified_ms(record),
        )
        return Mapped(events=(event,))
