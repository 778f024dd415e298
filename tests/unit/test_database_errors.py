"""Which database errors mean "retry later" (503, the batch retried) and which are bugs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from classifier.db import is_unavailable
from eventschemas.envelope import Envelope
from ingest.config import IngestSettings
from ingest.errors import IngestError
from ingest.fingerprints import Fingerprints
from ingest.orders.schemas import OrderIn
from ingest.orders.service import order_placed

# What asyncpg raised on the next statement of a connection PostgreSQL closed
# mid-statement (a `pg_ctlcluster restart` under 400 intake requests/s).
OUT_OF_STEP = asyncpg.InternalClientError(
    "cannot switch to state 12; another operation (2) is in progress"
)


def test_a_connection_left_out_of_step_by_a_restart_is_transient_for_the_worker() -> None:
    assert is_unavailable(OUT_OF_STEP)
    assert is_unavailable(asyncpg.InterfaceError("connection is closed"))
    assert not is_unavailable(ValueError("a bug"))
    assert not is_unavailable(KeyError("a bug"))


class Pool:
    """Stands in for asyncpg's pool: every statement fails with `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def fetch(self, query: str, *args: Sequence[Any]) -> list[Any]:
        raise self.error


def envelope() -> Envelope:
    order = OrderIn.model_validate(
        {
            "order_id": "o-1",
            "customer_id": "c-1",
            "amount": "10",
            "currency": "CNY",
            "placed_at": "2026-11-30T00:00:00Z",
        }
    )
    settings = IngestSettings()
    return order_placed(settings, order).to_envelope(settings.source)


async def test_intake_answers_503_when_the_connection_is_out_of_step() -> None:
    fingerprints = Fingerprints(Pool(OUT_OF_STEP), timeout=1, retry_after=5)  # type: ignore[arg-type]

    with pytest.raises(IngestError) as refused:
        await fingerprints.record([envelope()])

    assert refused.value.status == 503
    assert refused.value.headers == {"Retry-After": "5"}


async def test_a_bug_is_not_dressed_up_as_an_unavailable_database() -> None:
    fingerprints = Fingerprints(Pool(KeyError("a bug")), timeout=1, retry_after=5)  # type: ignore[arg-type]

    with pytest.raises(KeyError):
        await fingerprints.record([envelope()])
