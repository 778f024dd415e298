"""Keyed identities at the edge (pure): the key is required, digests are keyed and stable."""

from __future__ import annotations

import secrets

import pytest
from pydantic import SecretStr, ValidationError

from eventschemas.events import identity_digest
from ingest.config import IngestSettings
from ingest.identity import CustomerRef, derived_customer_id


@pytest.mark.parametrize("key", [None, "", "x" * 31])
def test_ingest_refuses_to_start_without_a_long_enough_key(
    key: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INGEST_IDENTITY_KEY", raising=False)
    if key is not None:
        monkeypatch.setenv("INGEST_IDENTITY_KEY", key)
    with pytest.raises(ValidationError) as refused:
        IngestSettings()
    message = str(refused.value)
    assert "INGEST_IDENTITY_KEY" in message
    assert "at least 32 characters" in message
    if key:
        assert key not in message  # a refused secret is never echoed


def test_a_key_of_32_characters_is_taken_as_its_utf8_bytes() -> None:
    key = secrets.token_hex(16)
    assert len(key) == 32
    settings = IngestSettings(identity_key=SecretStr(key))
    assert settings.identity_key_bytes() == key.encode()
    assert key not in repr(settings)


def test_spellings_of_one_phone_give_one_digest_and_one_derived_id() -> None:
    key = secrets.token_hex(32)
    settings = IngestSettings(identity_key=SecretStr(key))
    resolved = [
        CustomerRef(phone=phone).resolve(settings)
        for phone in ("+86 138 0013 8000", "13800138000", "+86 (138) 0013-8000")
    ]
    expected = identity_digest(key.encode(), "phone", "+8613800138000")
    assert {identity.phone_hash for _, identity in resolved if identity} == {expected}
    assert {customer for customer, _ in resolved} == {f"id-p-{expected[:24]}"}
    assert all(identity and identity.phone is None for _, identity in resolved)


def test_digests_and_derived_ids_depend_on_the_key() -> None:
    ref = CustomerRef(email=" Ann@Example.COM ", phone="13800138000")
    one = ref.resolve(IngestSettings(identity_key=SecretStr("a" * 32)))
    other = ref.resolve(IngestSettings(identity_key=SecretStr("b" * 32)))
    assert one[1] is not None
    assert other[1] is not None
    assert one[1].email_hash == identity_digest(b"a" * 32, "email", "ann@example.com")
    assert one[1].email_hash != other[1].email_hash
    assert one[0] == derived_customer_id(one[1]) == f"id-e-{one[1].email_hash[:24]}"
    assert one[0] != other[0]
    assert (one[1].phone, one[1].email) == (None, None)
