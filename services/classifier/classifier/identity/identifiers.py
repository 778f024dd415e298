"""E-mail addresses and phone numbers given to the API, normalised as ingest does and
turned into their keyed identity digests (the values are never stored)."""

from __future__ import annotations

import re

import phonenumbers

from classifier.errors import BadRequest
from eventschemas.events import identity_digest

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def email_digest(key: bytes, raw: str, field: str = "email") -> str:
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise BadRequest(f"{field}: not an e-mail address")
    return identity_digest(key, "email", email)


def phone_digest(key: bytes, raw: str, region: str, field: str = "phone") -> str:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise BadRequest(f"{field}: not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise BadRequest(f"{field}: not a possible phone number for its country")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return identity_digest(key, "phone", e164)
