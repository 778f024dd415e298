"""Verified API keys held in memory, so a request costs no database round trip for its key.

Both APIs (the classifier's read/admin keys, ingest's intake keys) check keys
through one `KeyCache`: a key found in the store is trusted for `ttl`
seconds, then looked up again, so a revoked key stops working within `ttl`
(the default 4 s keeps that under 5 s). A key not found is remembered for
`miss_ttl` (a client hammering with a wrong key costs one query a second,
and a new key works within that). Concurrent requests with a key that is
not cached share one lookup instead of each sending their own.

cachetools.TTLCache holds the entries: bounded (least recently used go
first), expiry on the monotonic clock, and well kept; no hand-rolled
dictionary that has to be cleared when it grows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cachetools import TTLCache

Found = TypeVar("Found")
DEFAULT_TTL_SECONDS = 4.0
MAX_KEYS = 10_000


class KeyCache(Generic[Found]):
    """What a key hash was verified as, for `ttl` seconds (not found: `miss_ttl`)."""

    def __init__(self, ttl: float, *, miss_ttl: float = 1.0, max_keys: int = MAX_KEYS) -> None:
        self._found: TTLCache[str, Found] | None = TTLCache(max_keys, ttl) if ttl > 0 else None
        self._missing: TTLCache[str, bool] | None = (
            TTLCache(max_keys, min(ttl, miss_ttl)) if min(ttl, miss_ttl) > 0 else None
        )
        self._loading: dict[str, asyncio.Future[Found | None]] = {}

    async def get(
        self, digest: str, load: Callable[[str], Awaitable[Found | None]]
    ) -> Found | None:
        """The cached verdict on `digest`, else `load(digest)`'s (shared by concurrent callers).

        `load` returns None for a key that is unknown or revoked; what it raises
        (the store is down) reaches every caller waiting for it and is not cached.
        """
        if self._found is not None and (hit := self._found.get(digest)) is not None:
            return hit
        if self._missing is not None and digest in self._missing:
            return None
        while (pending := self._loading.get(digest)) is not None:
            await asyncio.wait([pending])  # our own cancellation still reaches us
            if not pending.cancelled():  # else its caller went away: look it up ourselves
                return pending.result()
        future: asyncio.Future[Found | None] = asyncio.get_running_loop().create_future()
        self._loading[digest] = future
        try:
            found = await load(digest)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._loading[digest]
        if found is None:
            if self._missing is not None:
                self._missing[digest] = True
        elif self._found is not None:
            self._found[digest] = found
        future.set_result(found)
        return found
