"""One frozen model per activity event type: the `data` of an Envelope."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from eventschemas.envelope import Envelope, dataschema_for, deterministic_event_id
from eventschemas.limits import (
    MAX_COUNT,
    FreeText,
    IdText,
    Instant,
    Revision,
    check_formula_safe,
    check_id,
    check_json,
)

CustomerId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, strip_whitespace=True),
    AfterValidator(check_id),
]
NaturalId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, strip_whitespace=True),
    AfterValidator(check_id),
]
# Ids as HTTP clients send them (ingest request schemas): never formula-like, so an
# id cannot run in the spreadsheet a user exports it to. Events keep the plain types.
CustomerIdIn = Annotated[CustomerId, AfterValidator(check_formula_safe)]
NaturalIdIn = Annotated[NaturalId, AfterValidator(check_formula_safe)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]


class OrderStatus(StrEnum):
    PLACED = "placed"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"


class CallOutcome(StrEnum):
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    REJECTED = "rejected"
    CONNECTED = "connected"
    INTERESTED = "interested"
    NOT_INTERESTED = "not_interested"
    CALLBACK_REQUESTED = "callback_requested"
    DEAL_CLOSED = "deal_closed"


class IntentLevel(StrEnum):
    """The agent's judgement of the customer's intent, weakest first."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def identity_digest(key: bytes, kind: str, value: str) -> str:
    """The keyed digest of one identifier (HMAC-SHA256, hex): `kind` is `email`, `phone`
    or `customer`, `value` the normalised e-mail, the E.164 number or the customer id.

    Keyed, so that nobody without the key can test a guessed phone number against it
    (the phone numbers of a country are few enough to try every one).
    """
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def suppression_digest(key: bytes, kind: str, value: str) -> str:
    """The digest an erased identifier is suppressed under: `kind` is `customer` (value:
    the customer id) or `email`/`phone` (value: its identity digest). Keyed, and unlike
    the identity digests, so nothing kept after an erasure matches what was erased."""
    return identity_digest(key, "suppressed", f"{kind}:{value}")


class Identity(BaseModel):
    """The customer's contact points as keyed digests (see `identity_digest`), so the
    classifier can tell that two doors lead to one customer without ever holding the
    e-mail or the phone number.

    `phone`/`email` in clear are only read from events written before digests existed;
    nothing emits them any more.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    phone_hash: Digest | None = Field(
        default=None, description="identity_digest(key, 'phone', the number in E.164)."
    )
    email_hash: Digest | None = Field(
        default=None, description="identity_digest(key, 'email', the lower-cased address)."
    )
    phone: E164 | None = Field(default=None, description="Deprecated: never emitted.")
    email: IdText | None = Field(default=None, max_length=254, description="Deprecated.")


class ActivityEvent(BaseModel):
    """Base of every activity event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1

    customer_id: CustomerId
    revision: Revision = 0
    identity: Identity | None = Field(
        default=None, description="Digests of the phone/e-mail the source gave for the customer."
    )

    def natural_id(self) -> str:
        """Return the source system's id of the fact this event carries."""
        raise NotImplementedError

    def occurred_at(self) -> datetime:
        """Return when the fact happened in the source system."""
        raise NotImplementedError

    def to_envelope(self, source: str) -> Envelope:
        """Wrap this payload in a CloudEvents envelope with a deterministic id."""
        return Envelope(
            id=deterministic_event_id(source, self.TYPE, self.natural_id(), self.revision),
            source=source,
            type=self.TYPE,
            subject=self.customer_id,
            time=self.occurred_at(),
            dataschema=dataschema_for(self.TYPE, self.VERSION),
            data=self.model_dump(mode="json"),
        )


class OrderPlaced(ActivityEvent):
    TYPE: ClassVar[str] = "order.placed"

    order_id: NaturalId
    amount: Money
    currency: CurrencyCode
    amount_base: Money = Field(description="The amount in the base currency.")
    base_currency: CurrencyCode
    placed_at: Instant
    status: OrderStatus = OrderStatus.PLACED

    def natural_id(self) -> str:
        return self.order_id

    def occurred_at(self) -> datetime:
        return self.placed_at


class OrderRefunded(ActivityEvent):
    TYPE: ClassVar[str] = "order.refunded"

    refund_id: NaturalId
    order_id: NaturalId
    amount: Money
    currency: CurrencyCode
    amount_base: Money
    base_currency: CurrencyCode
    refunded_at: Instant

    def natural_id(self) -> str:
        return self.refund_id

    def occurred_at(self) -> datetime:
        return self.refunded_at


class OrderCancelled(ActivityEvent):
    TYPE: ClassVar[str] = "order.cancelled"

    order_id: NaturalId
    cancelled_at: Instant

    def natural_id(self) -> str:
        return self.order_id

    def occurred_at(self) -> datetime:
        return self.cancelled_at


class CallLogged(ActivityEvent):
    TYPE: ClassVar[str] = "call.logged"

    call_id: NaturalId
    agent_id: IdText | None = Field(default=None, max_length=128)
    direction: str = Field(default="outbound", pattern="^(inbound|outbound)$")
    started_at: Instant
    duration_seconds: int = Field(default=0, ge=0, le=MAX_COUNT)
    outcome: CallOutcome
    intent: IntentLevel | None = None
    notes: FreeText | None = Field(
        default=None, max_length=10_000, description="May hold PII; never logged."
    )

    def natural_id(self) -> str:
        return self.call_id

    def occurred_at(self) -> datetime:
        return self.started_at


class CrmContactUpdated(ActivityEvent):
    """Profile attributes of a customer changed in a CRM (only the given ones change)."""

    TYPE: ClassVar[str] = "crm.contact.updated"

    crm_record_id: NaturalId
    updated_at: Instant
    attributes: dict[str, Any] = Field(default_factory=dict)
    tags: list[Annotated[IdText, Field(max_length=200)]] | None = Field(
        default=None, max_length=500
    )
    source_event_id: NaturalId | None = Field(
        default=None, description="The CRM's own id of this notification, when it has one."
    )

    @field_validator("attributes")
    @classmethod
    def _attributes_storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json(value)
        return value

    def natural_id(self) -> str:
        return self.source_event_id or f"{self.crm_record_id}@{self.updated_at.isoformat()}"

    def occurred_at(self) -> datetime:
        return self.updated_at


class CrmCompanyUpdated(CrmContactUpdated):
    TYPE: ClassVar[str] = "crm.company.updated"


class CrmDealStageChanged(ActivityEvent):
    TYPE: ClassVar[str] = "crm.deal.stage_changed"

    deal_id: NaturalId
    stage: IdText = Field(min_length=1, max_length=64)
    amount_base: Money | None = None
    changed_at: Instant
    source_event_id: NaturalId | None = None

    def natural_id(self) -> str:
        return self.source_event_id or f"{self.deal_id}@{self.stage}@{self.changed_at.isoformat()}"

    def occurred_at(self) -> datetime:
        return self.changed_at


class RelationshipChange(StrEnum):
    """What happened to a salesperson's direct channel to the customer."""

    ADDED = "added"
    EDITED = "edited"
    REMOVED_BY_US = "removed_by_us"
    REMOVED_BY_CUSTOMER = "removed_by_customer"


Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class CrmRelationshipChanged(ActivityEvent):
    """A salesperson's channel to the customer (e.g. a WeCom contact) was opened, used or closed.

    `owner_id` is the salesperson's user id in that channel; the customer is
    the subject. No names or contact details travel here.
    """

    TYPE: ClassVar[str] = "crm.relationship.changed"

    channel: Channel = Field(description="Where the relationship lives, e.g. `wecom`.")
    owner_id: NaturalId = Field(description="The salesperson's user id in that channel.")
    change: RelationshipChange
    changed_at: Instant
    source_event_id: NaturalId | None = None

    def natural_id(self) -> str:
        return self.source_event_id or (
            f"{self.channel}:{self.owner_id}:{self.change.value}@{self.changed_at.isoformat()}"
        )

    def occurred_at(self) -> datetime:
        return self.changed_at


class CrmTouchpointLogged(ActivityEvent):
    """A salesperson's follow-up with the customer was recorded in a CRM (visit, message, meeting).

    Only what the follow-up was and when: its notes stay in the CRM.
    """

    TYPE: ClassVar[str] = "crm.touchpoint.logged"

    touchpoint_id: NaturalId
    channel: Channel = Field(description="The CRM that recorded it, e.g. `fxiaoke`.")
    kind: IdText | None = Field(
        default=None, max_length=64, description="The CRM's follow-up type, e.g. visit."
    )
    owner_id: NaturalId | None = Field(default=None, description="The salesperson's user id.")
    touched_at: Instant

    def natural_id(self) -> str:
        return f"{self.channel}:{self.touchpoint_id}@{self.touched_at.isoformat()}"

    def occurred_at(self) -> datetime:
        return self.touched_at


class CrmContactMerged(ActivityEvent):
    """A CRM (or any source) merged records: the customers `absorbed_ids` are one
    customer with the subject from now on (the subject survives).
    """

    TYPE: ClassVar[str] = "crm.contact.merged"

    absorbed_ids: list[CustomerId] = Field(min_length=1, max_length=100)
    crm_record_id: NaturalId | None = Field(
        default=None, description="The CRM's id of the surviving record, when it has one."
    )
    merged_at: Instant
    source_event_id: NaturalId | None = None

    def natural_id(self) -> str:
        return self.source_event_id or (
            f"merge:{self.customer_id}<-{','.join(sorted(self.absorbed_ids))}"
            f"@{self.merged_at.isoformat()}"
        )

    def occurred_at(self) -> datetime:
        return self.merged_at


class CrmCompanyMerged(CrmContactMerged):
    TYPE: ClassVar[str] = "crm.company.merged"


KindDigest = Annotated[str, StringConstraints(pattern=r"^(email|phone):[0-9a-f]{64}$")]


class CustomerErasureRequested(ActivityEvent):
    """Erase a customer (an admin's request, or a CRM's deletion): everything held on
    the subject and on every id and identifier merged with it goes, and they are
    suppressed from then on. The subject is the customer id; `identity` may name the
    e-mail/phone digests the request was made with.

    On the activity topic so that a replay erases at the same point of the stream.
    """

    TYPE: ClassVar[str] = "customer.erasure_requested"

    erasure_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")] = Field(
        description="The receipt id (a UUID): GET /v1/erasures/{erasure_id}."
    )
    requested_at: Instant
    requested_by: IdText | None = Field(
        default=None, max_length=200, description="Who asked: an API key id or a CRM source."
    )
    also_ids: list[CustomerId] = Field(
        default_factory=list,
        max_length=1000,
        description="Other customer ids merged with the subject when the request was made "
        "(a replay reaches them even before it has merged them).",
    )
    also_digests: list[KindDigest] = Field(
        default_factory=list,
        max_length=1000,
        description="Identity digests of those customers, as `email:<digest>`/`phone:<digest>`.",
    )

    def natural_id(self) -> str:
        return f"erasure:{self.erasure_id}"

    def occurred_at(self) -> datetime:
        return self.requested_at


EVENT_TYPES: dict[str, type[ActivityEvent]] = {
    cls.TYPE: cls
    for cls in (
        OrderPlaced,
        OrderRefunded,
        OrderCancelled,
        CallLogged,
        CrmContactUpdated,
        CrmCompanyUpdated,
        CrmDealStageChanged,
        CrmRelationshipChanged,
        CrmTouchpointLogged,
        CrmContactMerged,
        CrmCompanyMerged,
        CustomerErasureRequested,
    )
}


class UnknownEventType(ValueError):
    """The envelope names a type this version of the contracts does not know."""


def parse_event(envelope: Envelope) -> ActivityEvent:
    """Validate an envelope's data against its type's model."""
    model = EVENT_TYPES.get(envelope.type)
    if model is None:
        raise UnknownEventType(f"unknown event type {envelope.type!r}")
    event = model.model_validate(envelope.data)
    if event.customer_id != envelope.subject:
        raise ValueError("envelope subject does not match data.customer_id")
    return event
