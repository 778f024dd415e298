"""Customer identity at the edge: every input resolves to a customer id.

Phone numbers are normalised to E.164 and e-mail addresses lower-cased, then
only their keyed digests (`identity_digest`, HMAC-SHA256 with
INGEST_IDENTITY_KEY) travel in the event's `identity`: the classifier can tell
that two doors lead to one customer, nobody without the key can test a
guessed number against them. When a source gives no customer id, one is
derived from the e-mail digest (else the phone digest). Nothing here logs:
raw and normalised values are personal data.
"""

from __future__ import annotations

import re

import phonenumbers
from pydantic import BaseModel, Field

from eventschemas.events import CustomerIdIn, Identity, identity_digest
from eventschemas.limits import IdText
from ingest.config import IngestSettings
from ingest.errors import InvalidInput

# Hex digits of the digest in a derived customer id (96 bits: no collisions in practice).
DERIVED_ID_HEX = 24

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


def keyed_identity(key: bytes, *, phone: str | None, email: str | None) -> Identity | None:
    """The digests of an already normalised phone (E.164) and e-mail; None when neither."""
    if not (phone or email):
        return None
    return Identity(
        phone_hash=identity_digest(key, "phone", phone) if phone else None,
        email_hash=identity_digest(key, "email", email) if email else None,
    )


def derived_customer_id(identity: Identity) -> str:
    """A stable customer id from the e-mail digest, else the phone digest: never the value."""
    if identity.email_hash:
        kind, digest = "e", identity.email_hash
    elif identity.phone_hash:
        kind, digest = "p", identity.phone_hash
    else:  # pragma: no cover - callers check first
        raise ValueError("an identity without phone or e-mail digest")
    return f"id-{kind}-{digest[:DERIVED_ID_HEX]}"


def resolve_customer(
    customer_id: str | None,
    phone: str | None,
    email: str | None,
    settings: IngestSettings,
) -> tuple[str, Identity | None]:
    """Return the customer id and the keyed identity of one input."""
    identity = keyed_identity(
        settings.identity_key_bytes(),
        phone=normalize_phone(phone, settings.default_phone_region) if phone else None,
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

    def resolve(self, settings: IngestSettings) -> tuple[str, Identity | None]:
        return resolve_customer(self.customer_id, self.phone, self.email, settings)
