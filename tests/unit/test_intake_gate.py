"""The intake gate's bookkeeping (pure: a stand-in broker and fingerprint store)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from fastapi import Response

from eventschemas.envelope import Envelope
from ingest.errors import KafkaUnavailable
from ingest.fingerprints import Fingerprints
from ingest.gate import ANONYMOUS, IntakeGate
from ingest.publisher import EventPublisher
from ingest.quotas import Bucket


class Store:
    """Records every id as new; remembers what it was asked to forget."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    async def record(self, envelopes: list[Envelope]) -> tuple[dict[int, list[str]], list[str]]:
        return {}, [e.id for e in envelopes]

    async def forget(self, event_ids: list[str]) -> None:
        self.forgotten.extend(event_ids)


class Broker:
    def __init__(self, fail_on_call: int) -> None:
        self.calls = 0
        self.fail_on_call = fail_on_call

    async def publish(self, envelopes: list[Envelope]) -> None:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KafkaUnavailable("down")


def envelope(n: int) -> Any:
    class Stub:
        id = f"00000000-0000-0000-0000-{n:012d}"

    return Stub()


async def test_a_failed_chunk_forgets_only_its_own_records() -> None:
    store = Store()
    gate = IntakeGate(ANONYMOUS, None, cast(Fingerprints, store), Response())
    broker = cast(EventPublisher, Broker(fail_on_call=2))
    first, second = [envelope(1), envelope(2)], [envelope(3)]

    await gate.admit(first)
    await gate.publish(broker, first)
    await gate.admit(second)
    with pytest.raises(KafkaUnavailable):
        await gate.publish(broker, second)

    assert store.forgotten == [second[0].id]


def test_a_bucket_refuses_beyond_its_burst_and_refills_at_its_rate() -> None:
    bucket = Bucket(rate=2, burst=4, tokens=4)
    assert bucket.take(3) == 0
    wait = bucket.take(2)
    assert 0.4 < wait <= 0.5  # one token short at 2/s
    assert bucket.headers()["RateLimit-Remaining"] == "1"
    # A request larger than the burst passes on a full bucket and leaves a debt.
    full = Bucket(rate=1, burst=2, tokens=2)
    assert full.take(5) == 0
    assert full.take(1) > 3.9
