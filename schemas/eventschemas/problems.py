"""RFC 9457 problem details: the error body both HTTP services answer with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://customer-classifier.dev/problems/"


class FieldError(BaseModel):
    """One invalid field: where it is and what is wrong with it."""

    field: str
    location: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem details object, with per-field errors for validation."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """Turn pydantic/FastAPI error dicts into FieldErrors naming the field."""
    result = []
    for error in errors:
        loc: Sequence[Any] = error.get("loc", ())
        # Drop the "body"/"query" prefix for the field name, keep it in location.
        field_parts = (
            [str(p) for p in loc[1:]]
            if loc and loc[0] in {"body", "query", "path", "header"}
            else [str(p) for p in loc]
        )
        field = ".".join(field_parts) or "body"
        result.append(
            FieldError(
                field=field,
                location=".".join(str(p) for p in loc),
                message=str(error.get("msg", "invalid")),
            )
        )
    return result


def validation_problem(
    errors: list[FieldError], *, instance: str | None = None, status: int = 422
) -> Problem:
    """Build the problem answered when input fails validation."""
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:10])
    return Problem(
        type=PROBLEM_TYPE_BASE + "validation-error",
        title="Request validation failed",
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
    )


class ServiceError(Exception):
    """Base of domain errors that carry their own HTTP status (both services)."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors

    def to_problem(self, instance: str | None) -> Problem:
        return Problem(
            type=PROBLEM_TYPE_BASE + self.slug,
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            errors=self.errors,
        )


class ValidationFailed(ServiceError):
    """Input that breaks rules; `errors` names each field."""

    status = 422
    slug = "validation-error"
    title = "Request validation failed"


class BodyTooLarge(ServiceError):
    status = 413
    slug = "body-too-large"
    title = "Request body too large"


class InvalidInput(ValidationFailed):
    """Input that parsed but breaks a rule, naming the field."""

    def __init__(self, field: str, message: str, *, location: str = "body") -> None:
        loc = f"{location}.{field}" if location else field
        super().__init__(
            f"{field}: {message}", errors=[FieldError(field=field, location=loc, message=message)]
        )
