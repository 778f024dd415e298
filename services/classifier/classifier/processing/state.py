"""Per-customer state transitions: apply an event, let time pass, diff classes.

No I/O here: the batch module loads states, calls these, and writes the result.
Every instant is the business time of what happened (the event's time, or the
exact `next_review_at` a time-driven change was due), so replaying the same
stream gives the same history, whatever the batch boundaries or wall clock.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from classifier.engine import (
    CompiledScheme,
    CustomerFacts,
    Evaluation,
    Override,
    PriorClass,
    evaluate,
    from_micros,
    to_micros,
)
from eventschemas.changes import ChangeReason
from eventschemas.envelope import Envelope
from eventschemas.events import ActivityEvent

CHANGE_NAMESPACE = uuid.UUID("0b3f6c1e-2a7d-4f55-8e0c-91d2b7a4c6e3")


@dataclass(slots=True)
class Change:
    """One class change, ready for the outbox and the history."""

    change_id: str
    customer_id: str
    dimension: str
    old_class: str | None
    new_class: str
    scheme_version: int
    reason: ChangeReason
    event_id: str | None
    rule: str | None
    at: int  # epoch µs


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    facts: CustomerFacts
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    scheme_version: int | None = None
    evaluated_at: int | None = None
    next_review_at: int | None = None
    last_event_id: str | None = None
    kafka_partition: int | None = None
    # Manual classes: dimension -> {"class", "reason", "expires_at" (µs or None), "set_at"}.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirty: bool = False
    # True once an event changed the facts (new customers start with it): only
    # then are the facts document and aggregates written back.
    facts_changed: bool = False
    # The last evaluation, whose features are read (once) when the state is saved:
    # see Evaluation.features. Facts change only in apply_event, which evaluates
    # again right after, so this evaluation always matches the current facts.
    evaluation: Evaluation | None = None

    def settle(self) -> None:
        """Take the features of the last evaluation (before saving)."""
        if self.evaluation is not None:
            self.features = self.evaluation.features
            self.evaluation = None

    def active_overrides(self) -> dict[str, Override]:
        return {
            dim: Override(o["class"], o.get("expires_at"), o.get("reason", ""))
            for dim, o in self.overrides.items()
        }


def change_id(
    customer_id: str, dimension: str, at: int, new_class: str, reason: str, cause: str | None
) -> str:
    """A stable id: the same change computed twice (crash, replay) gets the same id."""
    key = f"{customer_id}|{dimension}|{at}|{new_class}|{reason}|{cause or ''}"
    return uuid5_str(key)


_NAMESPACE_BYTES = CHANGE_NAMESPACE.bytes


def uuid5_str(name: str) -> str:
    """`str(uuid.uuid5(CHANGE_NAMESPACE, name))` without building a UUID object (a hot
    path: every class change gets one); a unit test holds the two equal."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def reclassify(
    state: CustomerState,
    scheme: CompiledScheme,
    at: int,
    reason: ChangeReason,
    *,
    event_id: str | None = None,
    cutoffs: Mapping[str, Mapping[str, float]] | None = None,
) -> list[Change]:
    """Evaluate the scheme at `at`, store the results, and return what changed."""
    previous = {dim: PriorClass(c["class"], c["since"]) for dim, c in state.classes.items()}
    result = evaluate(
        scheme,
        state.facts,
        at,
        previous=previous,
        cutoffs=cutoffs,
        overrides=state.active_overrides() if state.overrides else None,
    )
    changes: list[Change] = []
    for dim, res in result.classes.items():
        old = state.classes.get(dim)
        old_cls = old["class"] if old else None
        if old_cls != res.cls:
            changes.append(
                Change(
                    change_id(state.customer_id, dim, at, res.cls, reason.value, event_id),
                    state.customer_id,
                    dim,
                    old_cls,
                    res.cls,
                    scheme.version,
                    reason,
                    event_id,
                    res.rule,
                    at,
                )
            )
        since = at if old_cls != res.cls or old is None else old["since"]
        state.classes[dim] = {
            "class": res.cls,
            "since": since,
            "rule": res.rule,
            "scheme_version": scheme.version,
            "explanation": res.explanation,
        }
    # Dimensions the scheme no longer has are dropped from the current view.
    for dim in set(state.classes) - set(result.classes):
        del state.classes[dim]
    state.evaluation = result  # features are taken from it when the state is saved
    state.scheme_version = scheme.version
    state.evaluated_at = at
    state.next_review_at = result.next_review_at
    state.dirty = True
    return changes


def review_until(
    state: CustomerState,
    scheme: CompiledScheme,
    until: int,
    *,
    cutoffs: Mapping[str, Mapping[str, float]] | None = None,
    limit: int = 1000,
) -> list[Change]:
    """Apply every time-driven change due at or before `until`, each at its exact instant."""
    changes: list[Change] = []
    for _ in range(limit):
        due = state.next_review_at
        if due is None or due > until:
            break
        changes += reclassify(state, scheme, due, ChangeReason.TIME, cutoffs=cutoffs)
    return changes


def apply_event(
    state: CustomerState,
    scheme: CompiledScheme,
    envelope: Envelope,
    event: ActivityEvent,
    *,
    cutoffs: Mapping[str, Mapping[str, float]] | None = None,
) -> list[Change]:
    """Catch up on time, fold the event into the facts, and reclassify at its instant."""
    at = to_micros(envelope.time)
    if state.evaluated_at is not None and at < state.evaluated_at:
        at = state.evaluated_at  # a late event is applied now, history never rewinds
    changes = review_until(state, scheme, at, cutoffs=cutoffs)
    state.facts.apply(event)
    state.facts_changed = True
    state.last_event_id = envelope.id
    changes += reclassify(
        state, scheme, at, ChangeReason.EVENT, event_id=envelope.id, cutoffs=cutoffs
    )
    return changes


def instant(us: int | None) -> Any:
    """Epoch µs to an aware datetime (None stays None), for storage."""
    return None if us is None else from_micros(us)
