"""What an event's `identity` must be: keyed digests of the normalised values, nothing clear."""

from __future__ import annotations

from eventschemas.events import identity_digest


def digested(
    key: bytes, *, phone: str | None = None, email: str | None = None
) -> dict[str, str | None]:
    """The `identity` of an event on the topic for this E.164 phone and lower-cased e-mail."""
    return {
        "phone_hash": identity_digest(key, "phone", phone) if phone else None,
        "email_hash": identity_digest(key, "email", email) if email else None,
        "phone": None,
        "email": None,
    }
