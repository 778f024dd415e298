"""Who may send what, how much, and whether a re-send conflicts: the intake gate.

Every intake endpoint takes an `IntakeGate` for its scope. The dependency
checks the key (401 without a valid one, 403 without the scope) before the
body is read; the endpoint then hands its valid events to `admit` (quota:
429, re-send conflicts) and `publish` (the broker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, cast

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from eventschemas.envelope import Envelope
from eventschemas.problems import ServiceError
from ingest.config import IngestSettings
from ingest.fingerprints import Fingerprints
from ingest.keys import Forbidden, IntakeKey, KeyStore, Unauthenticated
from ingest.metrics import RATE_LIMITED_EVENTS, RATE_LIMITED_REQUESTS
from ingest.publisher import EventPublisher
from ingest.quotas import Bucket, QuotaExceeded, Quotas
from ingest.suppressions import Suppressions, leave_out

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="IntakeKey",
    description="An API key with the endpoint's scope (orders:write, calls:write or "
    "imports:write): `classifier api-keys create --scope orders:write`.",
)
ANONYMOUS = IntakeKey(key_id="anonymous", scopes=frozenset(), rate_per_second=0, burst=None)


class IntakeGate:
    """One request's key, quota bucket and re-send check."""

    def __init__(
        self,
        key: IntakeKey,
        bucket: Bucket | None,
        fingerprints: Fingerprints | None,
        response: Response,
        suppressions: Suppressions | None = None,
    ) -> None:
        self.key = key
        self._suppressions = suppressions
        self._bucket = bucket
        self._fingerprints = fingerprints
        self._response = response
        self._recorded: list[str] = []

    async def charge(self, events: int, *, pace_up_to: float = 0) -> None:
        """Take `events` from the key's quota, or refuse the request with 429.

        With `pace_up_to`, a wait that short is waited out instead (CSV imports
        are paced to the key's rate rather than cut off at its burst).
        """
        if self._bucket is None or events == 0:
            return
        wait = self._bucket.take(events)
        while 0 < wait <= pace_up_to:
            await asyncio.sleep(wait)
            wait = self._bucket.take(events)
        headers = self._bucket.headers()
        if wait:
            RATE_LIMITED_REQUESTS.labels(key_id=self.key.key_id).inc()
            RATE_LIMITED_EVENTS.labels(key_id=self.key.key_id).inc(events)
            retry = max(1, int(wait + 0.999))
            raise QuotaExceeded(
                f"{events} events refused: this key may send {self._bucket.rate:g} events "
                f"per second (burst {self._bucket.burst}); nothing was accepted",
                headers={**headers, "Retry-After": str(retry)},
            )
        self._response.headers.update(headers)

    async def leave_out_suppressed(
        self, envelopes: list[Envelope]
    ) -> tuple[list[Envelope], list[str]]:
        """The envelopes to go on, and the ids of those of erased customers or identifiers
        (never published; 503 when the database does not answer)."""
        return await leave_out(self._suppressions, envelopes)

    async def admit(
        self, envelopes: list[Envelope], *, pace_up_to: float = 0
    ) -> dict[int, list[str]]:
        """Charge the quota and record the events; return {position: differing fields}
        of re-sends that conflict with what was accepted under the same id."""
        await self.charge(len(envelopes), pace_up_to=pace_up_to)
        return await self._record(envelopes)

    async def _record(self, envelopes: list[Envelope]) -> dict[int, list[str]]:
        if self._fingerprints is None or not envelopes:
            return {}
        conflicts, recorded = await self._fingerprints.record(envelopes)
        self._recorded.extend(recorded)
        return conflicts

    async def screen(self, envelopes: list[Envelope]) -> tuple[dict[int, list[str]], set[int]]:
        """`admit`, and the positions of the envelopes `leave_out_suppressed` would leave
        out: the two database checks run at once (a request waits for one round trip)."""
        await self.charge(len(envelopes))
        if self._suppressions is None:
            return await self._record(envelopes), set()
        suppressed = asyncio.ensure_future(self._suppressions.suppressed(envelopes))
        # Retrieved even when `admit` refuses the request first (then it is not needed).
        suppressed.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            return await self._record(envelopes), await suppressed
        finally:
            suppressed.cancel()

    async def publish(self, publisher: EventPublisher, envelopes: list[Envelope]) -> None:
        """Hand the events to the broker; if it fails, forget their records (nothing
        was accepted, so a corrected re-send is not a conflict)."""
        try:
            await publisher.publish(envelopes)
        except ServiceError:
            if self._fingerprints is not None:
                await self._fingerprints.forget(self._recorded)
            raise
        finally:
            # Recorded and now published (or forgotten): an import's next chunk
            # failing must not forget the chunks the broker took.
            self._recorded = []


def intake_gate(scope: str) -> Callable[..., Awaitable[IntakeGate]]:
    """A dependency giving the request's gate once its key holds `scope`."""

    async def gate(
        request: Request,
        response: Response,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> IntakeGate:
        state: Any = request.app.state
        settings = cast(IngestSettings, state.settings)
        fingerprints = cast(Fingerprints | None, state.fingerprints)
        suppressions = cast(Suppressions | None, state.suppressions)
        if not settings.auth_enabled:
            return IntakeGate(ANONYMOUS, None, fingerprints, response, suppressions)
        if credentials is None or not credentials.credentials:
            raise Unauthenticated(
                "send an API key: Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = await cast(KeyStore, state.key_store).verify(credentials.credentials)
        if key is None:
            raise Unauthenticated(
                "unknown or revoked API key",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if scope not in key.scopes:
            raise Forbidden(
                f"this endpoint needs an API key with the {scope} scope",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )
        return gate_of(state, key, response)

    return gate


def gate_of(state: Any, key: IntakeKey, response: Response) -> IntakeGate:
    """The gate of a request whose key was checked (its quota bucket, the app's checks)."""
    bucket = cast(Quotas, state.quotas).bucket(key.key_id, key.rate_per_second, key.burst)
    return IntakeGate(
        key,
        bucket,
        cast(Fingerprints | None, state.fingerprints),
        response,
        cast(Suppressions | None, state.suppressions),
    )


OrdersGate = Annotated[IntakeGate, Depends(intake_gate("orders:write"))]
CallsGate = Annotated[IntakeGate, Depends(intake_gate("calls:write"))]
ImportsGate = Annotated[IntakeGate, Depends(intake_gate("imports:write"))]
