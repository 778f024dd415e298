"""Intake quotas: a token bucket per key (events per second, burst).

Counted per ingest process: with INGEST_WORKERS processes and N replicas a key
may send up to processes x N times its rate in total (set the per-key rate
accordingly).
A request of more events than the burst is let through only when the bucket
is full, and then leaves it in debt, so a large batch is never refused forever.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ingest.errors import IngestError


class QuotaExceeded(IngestError):
    status = 429
    slug = "rate-limited"
    title = "This API key is over its intake quota; retry after Retry-After"


@dataclass
class Bucket:
    rate: float
    burst: int
    tokens: float
    updated: float = field(default_factory=time.monotonic)

    def _refill(self, now: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, events: int) -> float:
        """Take `events` tokens; 0 when granted, else the seconds to wait before a retry."""
        now = time.monotonic()
        self._refill(now)
        need = min(events, self.burst)
        if self.tokens >= need:
            self.tokens -= events
            return 0.0
        return (need - self.tokens) / self.rate

    def headers(self) -> dict[str, str]:
        """RateLimit headers: the IETF draft's RateLimit-Policy/RateLimit, and the
        widely read RateLimit-Limit/-Remaining/-Reset (seconds until full)."""
        remaining = max(0, math.floor(self.tokens))
        reset = max(0, math.ceil((self.burst - self.tokens) / self.rate))
        window = max(1, math.ceil(self.burst / self.rate))
        return {
            "RateLimit-Policy": f'"intake";q={self.burst};w={window}',
            "RateLimit": f'"intake";r={remaining};t={reset}',
            "RateLimit-Limit": str(self.burst),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
        }


class Quotas:
    """The buckets of the keys seen by this process."""

    def __init__(self, default_rate: float, default_burst: int) -> None:
        self._default_rate = default_rate
        self._default_burst = default_burst
        self._buckets: dict[str, Bucket] = {}

    def bucket(self, key_id: str, rate: float | None, burst: int | None) -> Bucket | None:
        """The key's bucket (its limits follow the key's current row); None: unlimited."""
        rate = self._default_rate if rate is None else rate
        burst = self._default_burst if burst is None else burst
        if rate <= 0:
            return None
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = Bucket(rate=rate, burst=burst, tokens=float(burst))
        else:
            bucket.rate, bucket.burst = rate, burst
        return bucket
