"""ORM models; importing this module registers every table on Base.metadata."""

from classifier.models.base import Base
from classifier.models.classes import ClassHistory, CustomerClass
from classifier.models.customer import Customer
from classifier.models.messaging import ClassChange, ProcessedEvent
from classifier.models.scheme import PopulationCutoffs, SchemeVersion

__all__ = [
    "Base",
    "ClassChange",
    "ClassHistory",
    "Customer",
    "CustomerClass",
    "PopulationCutoffs",
    "ProcessedEvent",
    "SchemeVersion",
]
