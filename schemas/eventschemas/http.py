"""FastAPI glue for problem details, installed once per app by both services."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from eventschemas.problems import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_BASE,
    Problem,
    ServiceError,
    field_errors,
    validation_problem,
)

log = logging.getLogger(__name__)


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    """Render a problem as an application/problem+json response."""
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


@dataclass(frozen=True)
class RouteLabel:
    """What a fast path puts in `scope["route"]` for the request metrics: the route
    template it serves (the metrics read `.path`; FastAPI's own route objects sit
    behind its included routers)."""

    path: str


async def handled(app: Any, scope: Any, exc: Exception) -> Response:
    """The app's answer to `exc` (its most specific exception handler's), for ASGI
    middleware that answers requests without the router (the services' fast paths)."""
    handlers = app.exception_handlers
    for kind in type(exc).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            response = handler(Request(scope), exc)
            if inspect.isawaitable(response):
                response = await response
            return cast(Response, response)
    raise exc


def problem_reason(problem_type: str, status: int) -> str:
    """A short, bounded label for a problem: its type slug, else http-<status>."""
    if problem_type.startswith(PROBLEM_TYPE_BASE):
        return problem_type.removeprefix(PROBLEM_TYPE_BASE)
    return f"http-{status}"


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and HTTP errors to RFC 9457 bodies."""

    async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return problem_response(exc.to_problem(request.url.path), exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problem = validation_problem(field_errors(exc.errors()), instance=request.url.path)
        return problem_response(problem)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        problem = Problem(title=str(exc.detail), status=exc.status_code, instance=request.url.path)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return problem_response(problem, headers)

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        # The client hung up mid-request: nothing to answer and nothing broken.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=499)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        problem = Problem(title="Internal server error", status=500, instance=request.url.path)
        return problem_response(problem)

    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(ClientDisconnect, on_client_gone)


def document_problems(app: FastAPI, secured: Mapping[str, str] | None = None) -> None:
    """Make the OpenAPI schema say what the handlers above really send.

    Every 4xx/5xx response is documented as `application/problem+json` with the
    `Problem` schema (FastAPI's default 422 body is replaced: ours is a problem
    with per-field `errors`), and every operation that takes an API key
    documents the 401 it answers without a valid one, plus the `secured`
    {status: description} entries the service answers on every such operation.
    """
    always = {"401": "No valid API key.", **(secured or {})}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem.pop("$defs", {}))
        components["Problem"] = problem
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        ref = {"$ref": "#/components/schemas/Problem"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if operation.get("security"):
                    for status, description in always.items():
                        responses.setdefault(status, {"description": description})
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": ref}}
                        if status == "422":
                            response["description"] = "The request is invalid (see `errors`)."
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
