"""What every CRM mapping shares: the answer, CRM field aliases, and the per-item fate."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from eventschemas.events import ActivityEvent, Identity
from ingest.config import IngestSettings
from ingest.errors import InvalidInput
from ingest.identity import keyed_identity, normalize_email, normalize_phone

MAX_WEBHOOK_ITEMS = 1000

# CRM field names (any case) that feed the default scheme's features, and the
# attribute each becomes. Other fields are kept under their own (lower-cased) name.
ATTRIBUTE_ALIASES = {
    "industry": "industry",
    "numberofemployees": "employee_count",
    "no_of_employees": "employee_count",
    "employees": "employee_count",
    "employee_count": "employee_count",
    "need_type": "need_type",
    "key_account": "key_account",
    "relationship": "relationship",
    "region": "region",
}
EMAIL_FIELDS = {"email", "email__c"}
PHONE_FIELDS = {"phone", "mobilephone", "mobile", "phone__c"}
# Personal fields that are not needed for classification: dropped at the edge.
PERSONAL_FIELDS = {
    "firstname", "lastname", "first_name", "last_name", "full_name", "salutation",
    "birthdate", "date_of_birth", "homephone", "otherphone", "fax", "secondary_email",
    "mailingstreet", "otherstreet", "street", "mailing_street", "description",
}  # fmt: skip
# Free-text fields (notes a salesperson typed): dropped at the edge unless
# INGEST_KEEP_FREE_TEXT=true, like call notes (minimal data).
FREE_TEXT_FIELDS = {
    "notes", "note", "comment", "comments", "remark", "remarks", "message",
    "hs_content", "hs_note_body", "about", "bio",
}  # fmt: skip
NUMERIC_ATTRIBUTES = {"employee_count"}


@dataclass(frozen=True)
class Mapped:
    """One incoming item turned into an event, or the reason it was skipped."""

    event: ActivityEvent | None = None
    ignored: str | None = None


class IgnoredItem(BaseModel):
    index: int
    reason: str


class WebhookAccepted(BaseModel):
    """The broker acknowledged `event_ids`, keyed by `customer_ids` (one per event);
    `ignored` items carried nothing to classify."""

    source: str
    accepted: int
    event_ids: list[str]
    customer_ids: list[str]
    ignored: list[IgnoredItem]
    suppressed: list[str] = Field(
        default_factory=list,
        description="Ids of events left out because their customer or identifier was "
        "erased (suppressed): never published.",
    )


# Erasure receipt ids of CRM deletions: uuid5 of the CRM's own id of the deletion, so
# a retried delivery is the same request (one receipt, one event id).
ERASURE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:customer-classifier:crm-erasure")


def erasure_id(source: str, natural: str) -> str:
    """The deterministic receipt id of a CRM's deletion `natural` (its own id of it)."""
    return str(uuid.uuid5(ERASURE_NAMESPACE, f"{source}:{natural}"))


def _attribute_value(name: str, value: Any) -> Any:
    if name in NUMERIC_ATTRIBUTES and isinstance(value, str):
        try:
            return int(float(value.replace(",", "")))
        except ValueError:
            return value
    if name == "industry" and isinstance(value, str):
        return value.strip().lower().replace(" ", "_")
    return value


def split_fields(
    fields: dict[str, Any], settings: IngestSettings
) -> tuple[dict[str, Any], Identity | None]:
    """CRM record fields -> (attributes for the classifier, keyed identity).

    Raises InvalidInput when an e-mail or phone field holds something unusable.
    """
    attributes: dict[str, Any] = {}
    phone = email = None
    for raw_name, value in fields.items():
        name = raw_name.strip().lower()
        if value is None or value == "":
            continue
        if name in EMAIL_FIELDS:
            email = email or normalize_email(str(value), field=raw_name)
        elif name in PHONE_FIELDS:
            phone = phone or normalize_phone(
                str(value), settings.default_phone_region, field=raw_name
            )
        elif name in PERSONAL_FIELDS or (name in FREE_TEXT_FIELDS and not settings.keep_free_text):
            continue
        else:
            attr = ATTRIBUTE_ALIASES.get(name, name)
            attributes[attr] = _attribute_value(attr, value)
    return attributes, keyed_identity(settings.identity_key_bytes(), phone=phone, email=email)


def from_epoch_ms(ms: int, field: str = "timestamp") -> datetime:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidInput(field, "not a plausible Unix time in milliseconds") from exc
