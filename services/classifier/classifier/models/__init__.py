"""ORM models; importing this module registers every table on Base.metadata."""

from classifier.models.access import ApiKey, ConsoleSession, IntakeFingerprint
from classifier.models.base import Base
from classifier.models.classes import ClassHistory, CustomerClass
from classifier.models.customer import Customer, CustomerFactRecord
from classifier.models.identity import CustomerMerge, IdentityLink, KeptApart
from classifier.models.job import Job
from classifier.models.messaging import ClassChange, ProcessedEvent
from classifier.models.privacy import AuditEntry, Erasure, Suppression
from classifier.models.scheme import PopulationCutoffs, SchemeVersion
from classifier.models.sync import FxiaokeAccount, FxiaokeSyncCursor
from classifier.models.webhooks import WebhookDelivery, WebhookSubscription

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "ClassChange",
    "ClassHistory",
    "ConsoleSession",
    "Customer",
    "CustomerClass",
    "CustomerFactRecord",
    "CustomerMerge",
    "Erasure",
    "FxiaokeAccount",
    "FxiaokeSyncCursor",
    "IdentityLink",
    "IntakeFingerprint",
    "Job",
    "KeptApart",
    "PopulationCutoffs",
    "ProcessedEvent",
    "SchemeVersion",
    "Suppression",
    "WebhookDelivery",
    "WebhookSubscription",
]
