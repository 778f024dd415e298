"""Domain errors of the classifier; each carries its HTTP status."""

from __future__ import annotations

from eventschemas.problems import ServiceError


class ClassifierError(ServiceError):
    """Base of classifier errors."""


class CustomerNotFound(ClassifierError):
    status = 404
    slug = "customer-not-found"
    title = "Customer not found"
