"""Customer identity at the edge: every input resolves to a customer id.

Phone numbers are normalised to E.164 and e-mail addresses lower-cased, and
both travel in the event's `identity` so the classifier can merge identities.
When a source gives no customer id, one is derived from a one-way hash of the
normalised e-mail (else phone), so the id itself carries no personal data.
Nothing here logs: raw and normalised values are personal data.
"""

from __future__ import annotations

import hashlib
import re

import phonenumbers
from pydantic import BaseModel, Field

from eventschemas.events import CustomerIdIn, Identity
from eventschemas.limits import IdText
from ingest.errors import InvalidInput

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_phone(raw: str, default_region: str, field: str = "phone") -> str:
    """Return the number in E.164; a number without a country code uses `default_region`."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(field, "not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidInput(field, "not a possible phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str, field: str = "email") -> str:
    """Return the address trimmed and lower-cased (both parts, as CRMs match them)."""
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput(field, "not an e-mail address")
    return email


def derived_customer_id(identity: Identity) -> str:
    """A stable customer id from the e-mail, else the phone: a hash, never the value itself."""
    if identity.email:
        kind, value = "e", identity.email
    elif identity.phone:
        kind, value = "p", identity.phone
    else:  # pragma: no cover - callers check first
        raise ValueError("an identity without phone or e-mail")
    return f"id-{kind}-{hashlib.sha256(value.encode()).hexdigest()[:20]}"


def resolve_customer(
    customer_id: str | None,
    phone: str | None,
    email: str | None,
    default_region: str,
) -> tuple[str, Identity | None]:
    """Return the customer id and the normalised identity of one input."""
    identity = None
    if phone or email:
        identity = Identity(
            phone=normalize_phone(phone, default_region) if phone else None,
            email=normalize_email(email) if email else None,
        )
    if customer_id:
        return customer_id, identity
    if identity is None:
        raise InvalidInput("customer_id", "give customer_id, or a phone or e-mail to derive it")
    return derived_customer_id(identity), identity


class CustomerRef(BaseModel):
    """Who an input is about: a customer id, or a phone/e-mail to derive it from."""

    customer_id: CustomerIdIn | None = Field(
        default=None, description="Your customer id; derived from e-mail/phone when absent."
    )
    phone: IdText | None = Field(
        default=None, max_length=64, description="Any common format; stored as E.164."
    )
    email: IdText | None = Field(default=None, max_length=254, description="Stored lower-cased.")

    def resolve(self, default_region: str) -> tuple[str, Identity | None]:
        return resolve_customer(self.customer_id, self.phone, self.email, default_region)
