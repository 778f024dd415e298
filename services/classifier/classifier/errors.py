"""Domain errors of the classifier; each carries its HTTP status."""

from __future__ import annotations

from eventschemas.problems import ServiceError


class ClassifierError(ServiceError):
    """Base of classifier errors."""


class CustomerNotFound(ClassifierError):
    status = 404
    slug = "customer-not-found"
    title = "Customer not found"


class NotFound(ClassifierError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(ClassifierError):
    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class BadRequest(ClassifierError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class Unauthenticated(ClassifierError):
    status = 401
    slug = "unauthenticated"
    title = "A valid API key is required"


class Forbidden(ClassifierError):
    status = 403
    slug = "forbidden"
    title = "This API key's scope does not allow this"


class DatabaseUnavailable(ClassifierError):
    status = 503
    slug = "database-unavailable"
    title = "The database is unavailable; retry later"


def database_input_problem(exc: BaseException) -> BadRequest:
    """The 400 for input PostgreSQL refuses to hold or compare (from a DataError)."""
    cause = getattr(exc, "orig", None)
    cause = getattr(cause, "__cause__", None) or cause or exc
    name = type(cause).__name__
    if name in ("CharacterNotInRepertoireError", "UntranslatableCharacterError"):
        return BadRequest("text in the request contains a NUL (\\u0000) character")
    if "OutOfRange" in name or "out of" in str(cause):
        return BadRequest("a number or instant in the request is out of range")
    return BadRequest("a value in the request cannot be stored or compared")
