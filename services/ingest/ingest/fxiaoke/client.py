"""Fxiaoke (纷享销客) OpenAPI client: the corp access token and paged CRM data queries.

    POST /cgi/corpAccessToken/get/V2  {appId, appSecret, permanentCode}
         -> {errorCode: 0, corpAccessToken, corpId, expiresIn}
    POST /cgi/crm/v2/data/query       {corpAccessToken, corpId, currentOpenUserId,
                                       data: {dataObjectApiName, search_query_info: {
                                         limit, offset, filters, orders}}}
         -> {errorCode: 0, data: {total, dataList: [...]}}

The token is renewed before it expires, and at once when Fxiaoke answers that
it expired. A rate limit (HTTP 429 or one of the configured error codes) is
waited out with exponential backoff; any other error code is raised, so the
caller keeps its cursor and tries again later, never in a tight loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ingest.config import IngestSettings

log = logging.getLogger(__name__)

TOKEN_PATH = "/cgi/corpAccessToken/get/V2"
QUERY_PATH = "/cgi/crm/v2/data/query"


class FxiaokeError(Exception):
    """Fxiaoke refused a call; `code` is its errorCode (or the HTTP status)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"Fxiaoke error {code}: {message}")
        self.code = code


class FxiaokeNotConfigured(Exception):
    """A credential the connector needs is not set."""


@dataclass(frozen=True)
class Page:
    total: int
    records: list[dict[str, Any]]


@dataclass
class _Token:
    value: str
    corp_id: str
    renew_at: float  # time.monotonic()


class FxiaokeClient:
    """One tenant's OpenAPI session; `sleep` is injectable so backoff is observable."""

    def __init__(self, settings: IngestSettings, http: httpx.AsyncClient | None = None) -> None:
        missing = [
            f"INGEST_FXIAOKE_{name.upper()}"
            for name in ("app_id", "app_secret", "permanent_code", "open_user_id")
            if getattr(settings, f"fxiaoke_{name}") is None
        ]
        if missing:
            raise FxiaokeNotConfigured(f"set {', '.join(missing)}")
        self._settings = settings
        self._http = http or httpx.AsyncClient(
            base_url=settings.fxiaoke_base_url, timeout=settings.fxiaoke_timeout_seconds
        )
        self._token: _Token | None = None
        self.tokens_issued = 0
        self.backoffs: list[float] = []

    async def aclose(self) -> None:
        await self._http.aclose()

    async def corp_id(self) -> str:
        return (await self._valid_token()).corp_id

    async def _valid_token(self) -> _Token:
        if self._token is None or time.monotonic() >= self._token.renew_at:
            self._token = await self._new_token()
        return self._token

    async def _new_token(self) -> _Token:
        s = self._settings
        assert s.fxiaoke_app_secret is not None
        assert s.fxiaoke_permanent_code is not None
        body = await self._post(
            TOKEN_PATH,
            {
                "appId": s.fxiaoke_app_id,
                "appSecret": s.fxiaoke_app_secret.get_secret_value(),
                "permanentCode": s.fxiaoke_permanent_code.get_secret_value(),
            },
        )
        expires_in = float(body.get("expiresIn") or 7200)
        # Renew ahead of expiry: 10% of the lifetime, at most 5 minutes.
        margin = min(300.0, expires_in / 10)
        self.tokens_issued += 1
        return _Token(
            str(body["corpAccessToken"]),
            str(body["corpId"]),
            time.monotonic() + expires_in - margin,
        )

    async def query(
        self,
        object_api_name: str,
        *,
        filters: list[dict[str, Any]],
        orders: list[dict[str, Any]],
        limit: int,
        offset: int,
    ) -> Page:
        """One page of `object_api_name` records matching `filters`."""
        for attempt in range(2):
            token = await self._valid_token()
            payload = {
                "corpAccessToken": token.value,
                "corpId": token.corp_id,
                "currentOpenUserId": self._settings.fxiaoke_open_user_id,
                "data": {
                    "dataObjectApiName": object_api_name,
                    "search_query_info": {
                        "limit": limit,
                        "offset": offset,
                        "filters": filters,
                        "orders": orders,
                    },
                },
            }
            try:
                body = await self._post(QUERY_PATH, payload)
            except FxiaokeError as exc:
                if exc.code in self._settings.fxiaoke_token_expired_codes and attempt == 0:
                    log.info("fxiaoke token expired early; renewing")
                    self._token = None
                    continue
                raise
            data = body.get("data") or {}
            return Page(int(data.get("total") or 0), list(data.get("dataList") or []))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST, waiting out rate limits; returns the body of an errorCode 0 answer."""
        delay = self._settings.fxiaoke_backoff_seconds
        for _ in range(self._settings.fxiaoke_max_retries + 1):
            response = await self._http.post(path, json=payload)
            body = _json_object(response)
            code = int(body.get("errorCode", -1)) if body else response.status_code
            limited = response.status_code == 429 or (
                code in self._settings.fxiaoke_rate_limit_codes
            )
            if limited:
                wait = _retry_after(response) or delay
                log.warning("fxiaoke rate limit on %s; waiting %.1f s", path, wait)
                self.backoffs.append(wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self._settings.fxiaoke_max_backoff_seconds)
                continue
            if response.status_code >= 400 or code != 0:
                raise FxiaokeError(code, str(body.get("errorMessage") or response.reason_phrase))
            return body
        raise FxiaokeError(429, "still rate limited after retries")


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} when it is not one (an error page, say)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
