"""A local HTTP server answering as Fxiaoke's OpenAPI documents it, for the sync tests.

Real HTTP (uvicorn on a free port, in the test's event loop), the documented
request and answer shapes, and knobs for what the real service does: tokens
that expire, a rate limit, an error in the middle of a sync.

    POST /cgi/corpAccessToken/get/V2  {appId, appSecret, permanentCode}
         -> {errorCode: 0, errorMessage, corpAccessToken, corpId, expiresIn}
    POST /cgi/crm/v2/data/query       {corpAccessToken, corpId, currentOpenUserId,
                                       data: {dataObjectApiName, search_query_info}}
         -> {errorCode: 0, errorMessage, data: {total, offset, limit, dataList}}
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.processes import free_port

TOKEN_EXPIRED = 20016
SYSTEM_ERROR = 10001  # made up for a failure the connector cannot fix by retrying
MAX_LIMIT = 100


@dataclass
class FakeFxiaoke:
    app_id: str
    app_secret: str
    permanent_code: str
    corp_id: str = field(default_factory=lambda: f"FSCID_{secrets.token_hex(6)}")
    open_user_id: str = "FSUID_ADMIN"
    expires_in: int = 7200
    rate_limit_code: int = 20014
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    tokens_issued: int = 0
    queries: list[dict[str, Any]] = field(default_factory=list)
    rate_limited: int = 0  # answer this many next queries with the rate-limit error
    rate_limit_http: bool = False  # as HTTP 429 with Retry-After instead of an errorCode
    fail_after: int | None = None  # after this many more answered queries, fail one
    failing_code: int = SYSTEM_ERROR
    base_url: str = ""

    def add(self, object_api_name: str, *records: dict[str, Any]) -> None:
        self.objects.setdefault(object_api_name, []).extend(records)

    def update(self, object_api_name: str, record_id: str, **changes: Any) -> None:
        for record in self.objects[object_api_name]:
            if record["_id"] == record_id:
                record.update(changes)

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    # ---- endpoints ----------------------------------------------------------

    async def token(self, request: Request) -> JSONResponse:
        body = await request.json()
        if (body.get("appId"), body.get("appSecret"), body.get("permanentCode")) != (
            self.app_id,
            self.app_secret,
            self.permanent_code,
        ):
            return _error(20001, "appId/appSecret/permanentCode 不正确")
        token = secrets.token_hex(16)
        self.tokens[token] = time.monotonic() + self.expires_in
        self.tokens_issued += 1
        return JSONResponse(
            {
                "errorCode": 0,
                "errorMessage": "success",
                "corpAccessToken": token,
                "corpId": self.corp_id,
                "expiresIn": self.expires_in,
            }
        )

    async def query(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.queries.append(body)
        expiry = self.tokens.get(body.get("corpAccessToken", ""))
        if expiry is None or expiry <= time.monotonic():
            return _error(TOKEN_EXPIRED, "corpAccessToken 已过期")
        if body.get("corpId") != self.corp_id or body.get("currentOpenUserId") != self.open_user_id:
            return _error(20002, "corpId 或 currentOpenUserId 不正确")
        if self.rate_limited > 0:
            self.rate_limited -= 1
            if self.rate_limit_http:
                return JSONResponse({}, status_code=429, headers={"Retry-After": "0.05"})
            return _error(self.rate_limit_code, "调用频率超出限制")
        if self.fail_after is not None:
            if self.fail_after == 0:
                self.fail_after = None
                return _error(self.failing_code, "系统错误")
            self.fail_after -= 1
        data = body.get("data") or {}
        records = self.objects.get(data.get("dataObjectApiName"))
        if records is None:
            return _error(20003, f"对象 {data.get('dataObjectApiName')} 不存在")
        info = data.get("search_query_info") or {}
        limit, offset = int(info.get("limit", 20)), int(info.get("offset", 0))
        if not 1 <= limit <= MAX_LIMIT or offset < 0:
            return _error(20004, "limit 或 offset 超出范围")
        matching = [r for r in records if all(_match(r, f) for f in info.get("filters", []))]
        for order in reversed(info.get("orders", [])):
            matching.sort(key=lambda r: r.get(order["fieldName"]), reverse=not order["isAsc"])
        return JSONResponse(
            {
                "errorCode": 0,
                "errorMessage": "OK",
                "data": {
                    "total": len(matching),
                    "offset": offset,
                    "limit": limit,
                    "dataList": [dict(r) for r in matching[offset : offset + limit]],
                },
            }
        )

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeFxiaoke]:
        app = Starlette(
            routes=[
                Route("/cgi/corpAccessToken/get/V2", self.token, methods=["POST"]),
                Route("/cgi/crm/v2/data/query", self.query, methods=["POST"]),
            ]
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            server.should_exit = True
            await task


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"errorCode": code, "errorMessage": message})


def _match(record: dict[str, Any], condition: dict[str, Any]) -> bool:
    value, operand = record.get(condition["field_name"]), condition["field_values"][0]
    match condition["operator"]:
        case "GT":
            return value is not None and value > operand
        case "GTE":
            return value is not None and value >= operand
        case "LT":
            return value is not None and value < operand
        case "LTE":
            return value is not None and value <= operand
        case "EQ":
            return bool(value == operand)
    raise ValueError(f"operator {condition['operator']!r} not supported by the test server")
