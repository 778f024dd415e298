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
