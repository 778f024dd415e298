"""Reading request bodies the API accepts in more than one format."""

from __future__ import annotations

import orjson
from fastapi import Request

from classifier.errors import ClassifierError
from eventschemas.problems import BodyTooLarge, InvalidInput

MAX_SCHEME_BYTES = 1_000_000


class UnsupportedMediaType(ClassifierError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported content type"


async def read_text_body(request: Request) -> str:
    """A scheme as YAML or JSON text (JSON is YAML too, but is checked to be an object)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/plain",
        "application/json",
    ):
        raise UnsupportedMediaType("send the scheme as application/yaml or application/json")
    body = await request.body()
    if len(body) > MAX_SCHEME_BYTES:
        raise BodyTooLarge(f"a scheme is at most {MAX_SCHEME_BYTES} bytes")
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise UnsupportedMediaType("the body is not UTF-8 text") from exc
    if content_type == "application/json":
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("body", f"invalid JSON: {exc}") from exc
    return text
