"""The record published on the class-change topic, one per class change.

On the topic each change is a CloudEvent in structured mode, like the activity
events: the envelope's `data` is a ClassChanged, `id` is the change id,
`subject` the customer id and `time` when the change happened.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from eventschemas.envelope import Envelope, dataschema_for

CHANGE_EVENT_TYPE = "class.changed"
CHANGE_EVENT_VERSION = 1
CHANGE_DATASCHEMA = dataschema_for(CHANGE_EVENT_TYPE, CHANGE_EVENT_VERSION)
# The CloudEvents `source` of class changes: the classifier, whichever worker relayed them.
CHANGE_SOURCE = "urn:customer-classifier:classifier"
CHANGE_ID_HEADER = "change_id"


def _envelope(
    record: ClassChanged | CustomerMerged | CustomerErased, kind: str, schema: str
) -> Envelope:
    """The CloudEvent a record of the class-change topic travels in: `data` is the record."""
    return Envelope(
        id=record.change_id,
        source=CHANGE_SOURCE,
        type=kind,
        subject=record.customer_id,
        time=record.occurred_at,
        dataschema=schema,
        data=record.model_dump(mode="json"),
    )


class ChangeReason(StrEnum):
    EVENT = "event"
    TIME = "time"
    SCHEME_CHANGE = "scheme_change"
    OVERRIDE = "override"
    MERGE = "merge"
    UNMERGE = "unmerge"
    ERASURE = "erasure"


class ClassChanged(BaseModel):
    """A customer moved from one class to another in one dimension."""

    model_config = ConfigDict(frozen=True)

    change_id: str
    customer_id: str
    dimension: str
    old_class: str | None
    new_class: str
    scheme_version: int
    reason: ChangeReason
    event_id: str | None
    rule: str | None = None
    occurred_at: AwareDatetime

    def to_envelope(self) -> Envelope:
        """The CloudEvent this change travels in on the class-change topic."""
        return _envelope(self, CHANGE_EVENT_TYPE, CHANGE_DATASCHEMA)


MERGED_EVENT_TYPE = "customer.merged"
MERGED_EVENT_VERSION = 1
MERGED_DATASCHEMA = dataschema_for(MERGED_EVENT_TYPE, MERGED_EVENT_VERSION)


class CustomerMerged(BaseModel):
    """A merge made one customer of two: `absorbed_ids` lead to `customer_id` (the
    survivor) from now on. The survivor's class changes that follow from it carry
    reason `merge`; the absorbed customer's classes end with it.

    On the class-change topic beside the ClassChanged records, keyed by the survivor.
    """

    model_config = ConfigDict(frozen=True)

    change_id: str
    customer_id: str
    absorbed_ids: list[str]
    reason: ChangeReason
    event_id: str | None
    occurred_at: AwareDatetime

    def to_envelope(self) -> Envelope:
        return _envelope(self, MERGED_EVENT_TYPE, MERGED_DATASCHEMA)


ERASED_EVENT_TYPE = "customer.erased"
ERASED_EVENT_VERSION = 1
ERASED_DATASCHEMA = dataschema_for(ERASED_EVENT_TYPE, ERASED_EVENT_VERSION)


class CustomerErased(BaseModel):
    """Forget this customer: it was erased (an admin's or a CRM's request), with every
    id merged into it (one record per id). Downstream systems delete what they hold on
    `customer_id`; later events of it are suppressed, so no class change follows.

    On the class-change topic, keyed by the erased id; not kept in the change feed.
    """

    model_config = ConfigDict(frozen=True)

    change_id: str
    customer_id: str
    erasure_id: str
    reason: ChangeReason
    event_id: str | None
    occurred_at: AwareDatetime

    def to_envelope(self) -> Envelope:
        return _envelope(self, ERASED_EVENT_TYPE, ERASED_DATASCHEMA)
