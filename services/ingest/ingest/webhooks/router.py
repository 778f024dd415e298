"""POST /v1/webhooks/{source}: CRM webhooks, each with its vendor's authentication."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Path, Request, Response, status
from pydantic import SecretStr, ValidationError

from eventschemas.problems import Problem, ValidationFailed, field_errors
from ingest.config import IngestSettings
from ingest.deps import PublisherDep, SettingsDep
from ingest.errors import IngestError, InvalidInput
from ingest.intake import UnsupportedMediaType
from ingest.suppressions import leave_out
from ingest.webhooks import auth
from ingest.webhooks.common import IgnoredItem, Mapped, WebhookAccepted
from ingest.webhooks.generic import map_generic
from ingest.webhooks.hubspot import map_hubspot
from ingest.webhooks.salesforce import ACK_RESPONSE, map_salesforce
from ingest.webhooks.wecom import router as wecom_router
from ingest.webhooks.zoho import TOKEN_HEADER, map_zoho

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
# WeCom has a protocol of its own (GET verification, encrypted XML): its routes
# come first, so /{source} below never sees it.
router.include_router(wecom_router)
SOURCES = ("generic", "hubspot", "salesforce", "zoho")


class UnknownSource(IngestError):
    status = 404
    slug = "unknown-source"
    title = "No such webhook source"


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _json(request: Request, body: bytes) -> Any:
    if _content_type(request) != "application/json":
        raise UnsupportedMediaType("send application/json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("body", f"invalid JSON: {exc}") from exc


def _secret(value: SecretStr | None, source: str, variable: str) -> str:
    if value is None:
        raise UnknownSource(f"webhook source {source!r} is not enabled here (set {variable})")
    return value.get_secret_value()


def _signed_uri(request: Request, public_base_url: str | None) -> str:
    if not public_base_url:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return public_base_url.rstrip("/") + request.url.path + query


def _zoho_fields(request: Request, body: bytes) -> dict[str, Any]:
    content_type = _content_type(request)
    if content_type == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError as exc:
            raise InvalidInput("body", "the form is not UTF-8") from exc
    fields = _json(request, body)
    if not isinstance(fields, dict):
        raise InvalidInput("body", "expected a JSON object of parameters")
    return fields


def _map(source: str, request: Request, body: bytes, settings: IngestSettings) -> list[Mapped]:
    max_age = settings.webhook_max_age_seconds
    match source:
        case "generic":
            secret = _secret(
                settings.generic_webhook_secret, source, "INGEST_GENERIC_WEBHOOK_SECRET"
            )
            auth.verify_generic(
                secret,
                request.headers.get(auth.GENERIC_TIMESTAMP_HEADER),
                request.headers.get(auth.GENERIC_SIGNATURE_HEADER),
                body,
                max_age,
            )
            return map_generic(settings, _json(request, body))
        case "hubspot":
            secret = _secret(settings.hubspot_client_secret, source, "INGEST_HUBSPOT_CLIENT_SECRET")
            auth.verify_hubspot(
                secret,
                request.method,
                _signed_uri(request, settings.public_base_url),
                body,
                request.headers.get("X-HubSpot-Request-Timestamp"),
                request.headers.get("X-HubSpot-Signature-v3"),
                max_age,
            )
            return map_hubspot(settings, _json(request, body))
        case "salesforce":
            if not settings.salesforce_orgs():
                raise UnknownSource(
                    "webhook source 'salesforce' is not enabled here "
                    "(set INGEST_SALESFORCE_ORGANIZATION_IDS)"
                )
            if _content_type(request) not in ("text/xml", "application/soap+xml"):
                raise UnsupportedMediaType("send text/xml (a SOAP outbound message)")
            return map_salesforce(settings, body)
        case "zoho":
            token = _secret(settings.zoho_webhook_token, source, "INGEST_ZOHO_WEBHOOK_TOKEN")
            fields = _zoho_fields(request, body)
            given = (
                request.headers.get(TOKEN_HEADER)
                or fields.pop("token", None)
                or request.query_params.get("token")
            )
            fields.pop("token", None)
            auth.verify_token(token, given, f"the {TOKEN_HEADER} header or a `token` parameter")
            return map_zoho(settings, fields)
    raise UnknownSource(f"unknown webhook source {source!r}; known: {', '.join(SOURCES)}")


@router.post(
    "/{source}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted,
    responses={
        200: {"description": "Salesforce: the SOAP acknowledgement", "content": {"text/xml": {}}},
        401: {"model": Problem, "description": "Bad signature or token, or stale timestamp."},
        403: {"model": Problem, "description": "Sender not configured (Salesforce org)."},
        404: {"model": Problem, "description": "Unknown or disabled source."},
        413: {"model": Problem},
        415: {"model": Problem},
        422: {"model": Problem, "description": "Malformed payload; the body names the field."},
        503: {"model": Problem, "description": "Broker unavailable; retry after Retry-After."},
    },
)
async def receive_webhook(
    source: Annotated[str, Path(description=f"One of: {', '.join(SOURCES)}.")],
    request: Request,
    settings: SettingsDep,
    publisher: PublisherDep,
) -> Response | WebhookAccepted:
    """Authenticate, map to normalised CRM events, publish; answer once the broker acked."""
    body = await request.body()
    try:
        mapped = _map(source, request, body, settings)
    except ValidationError as exc:
        errors = field_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])
        raise ValidationFailed(
            "; ".join(f"{e.field}: {e.message}" for e in errors[:5]), errors=errors
        ) from exc
    envelopes = [m.event.to_envelope(f"crm/{source}") for m in mapped if m.event is not None]
    envelopes, suppressed = await leave_out(request.app.state.suppressions, envelopes)
    await publisher.publish(envelopes)
    if source == "salesforce":
        return Response(ACK_RESPONSE, media_type="text/xml", status_code=200)
    return WebhookAccepted(
        source=source,
        accepted=len(envelopes),
        event_ids=[e.id for e in envelopes],
        customer_ids=[e.subject for e in envelopes],
        ignored=[IgnoredItem(index=i, reason=m.ignored) for i, m in enumerate(mapped) if m.ignored],
        suppressed=suppressed,
    )
