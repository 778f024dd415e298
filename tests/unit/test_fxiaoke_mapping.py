"""Fxiaoke records -> events, as the shipped mapping file says (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from eventschemas.events import CrmCompanyUpdated, CrmContactUpdated, OrderPlaced, identity_digest
from ingest.config import IngestSettings
from ingest.fxiaoke.mapping import RecordMapper, load_mapping

MS = 1_790_000_000_000


@pytest.fixture
def mapper() -> RecordMapper:
    return RecordMapper(IngestSettings(), load_mapping(None), {})


def test_accounts_come_first_whatever_the_file_order() -> None:
    kinds = [spec.kind for _, spec in load_mapping(None).ordered()]
    assert kinds[0] == "account"


def test_records_without_id_time_or_account_are_ignored_with_a_reason(
    mapper: RecordMapper,
) -> None:
    assert mapper.map("AccountObj", {"_id": "a"}).ignored
    assert mapper.map("ContactObj", {"_id": "c", "last_modified_time": MS}).ignored
    deleted = {"_id": "a", "last_modified_time": MS, "is_deleted": True}
    assert mapper.map("AccountObj", deleted).ignored == "deleted record"
    no_amount = {"_id": "o", "account_id": "a", "last_modified_time": MS, "order_amount": "-5"}
    assert "amount" in (mapper.map("SalesOrderObj", no_amount).ignored or "")


def test_a_bad_phone_is_dropped_but_the_e_mail_kept(
    mapper: RecordMapper, identity_key: bytes
) -> None:
    record: dict[str, Any] = {
        "_id": "c",
        "account_id": ["a-1"],
        "mobile1": "not a phone",
        "email": "A@B.CN",
        "last_modified_time": MS,
    }
    [event] = mapper.map("ContactObj", record).events
    assert isinstance(event, CrmContactUpdated)
    assert event.customer_id == "fxiaoke-a-1"
    assert event.identity is not None
    # Only the keyed digest of the normalised e-mail travels, never the address.
    assert event.identity.model_dump(exclude_none=True) == {
        "email_hash": identity_digest(identity_key, "email", "a@b.cn")
    }


def test_an_account_resolves_its_dependents_to_the_same_customer() -> None:
    mapping = load_mapping(None).model_copy(update={"wecom_external_userid_field": "wx"})
    mapper = RecordMapper(IngestSettings(), mapping, {})
    account = mapper.map("AccountObj", {"_id": "a-1", "wx": "wmX", "last_modified_time": MS})
    assert account.account == ("a-1", "wecom-wmX")
    assert isinstance(account.events[0], CrmCompanyUpdated)
    order = {"_id": "o", "account_id": "a-1", "order_amount": 10, "last_modified_time": MS}
    [placed] = mapper.map("SalesOrderObj", order).events
    assert isinstance(placed, OrderPlaced)
    assert placed.customer_id == "wecom-wmX"
    assert placed.status == "placed"  # no status given
    assert placed.revision == MS


def test_event_ids_follow_the_record_version(mapper: RecordMapper) -> None:
    def event_id(modified: int) -> str:
        record = {"_id": "a", "industry": "零售", "last_modified_time": modified}
        return mapper.map("AccountObj", record).events[0].to_envelope("crm/fxiaoke").id

    assert event_id(MS) == event_id(MS)
    assert event_id(MS) != event_id(MS + 1)
