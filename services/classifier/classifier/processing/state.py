"""Per-customer state transitions: apply an event, let time pass, diff classes.

No I/O here: the batch module loads states, calls these, and writes the result.
Every instant is the business time of what happened (the event's time, or the
exact `next_review_at` a time-driven change was due), so replaying the same
stream gives the same history, whatever the batch boundaries or wall clock.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from classifier.engine import (
    ClassResult,
    CompiledScheme,
    CustomerFacts,
    Evaluation,
    Override,
    PriorClass,
    evaluate,
    from_micros,
    to_micros,
)
from classifier.engine.evaluate import overrides_from
from classifier.engine.facts import DAY_US, Fact, fact_of
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
    # How the time-moving values among `features` and the explanations' checks
    # move after `evaluated_at` (Feature.motion), for reads as of the read.
    motion: dict[str, list[Any]] = field(default_factory=dict)
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
    # Facts folded since the state was loaded, for the facts log.
    new_facts: list[tuple[Fact, str]] = field(default_factory=list)
    # The facts document is a checkpoint of the facts log (see save_states): how
    # many logged facts it lacks, and whether it must be written at the next save
    # (a new customer, a rebuild, a compaction).
    unsaved_facts: int = 0
    doc_due: bool = False
    # Explanations not built yet, by dimension: the result of the evaluation that
    # picked the class, and the basis of its `next` (see reclassify, materialize).
    pending: dict[str, tuple[ClassResult, list[Any]]] = field(default_factory=dict)

    def document_due(self) -> bool:
        return self.doc_due or self.unsaved_facts >= FACTS_CHECKPOINT_EVERY

    def settle(self, scheme: CompiledScheme | None = None) -> None:
        """Before saving: take the features of the last evaluation, and fold detail
        older than the scheme's horizon into the summary of the past."""
        self.materialize()
        if self.evaluation is not None:
            self.features = self.evaluation.features
            self.evaluation = None
            if scheme is not None and self.evaluated_at is not None:
                self.motion = motion_of(self, scheme, self.evaluated_at)
        if (
            scheme is not None
            and self.facts_changed
            and self.evaluated_at is not None
            and compact(self.facts, scheme, self.evaluated_at)
        ):
            self.doc_due = True

    def materialize(self) -> None:
        """Build the explanations evaluations left pending (see reclassify): at settle.

        Each is built on the facts its evaluation saw: those facts may have taken
        later facts of the batch meanwhile only where its dimension does not read
        them (see keep_facts); a unit test holds deferred explanations equal to
        immediate ones."""
        for dim, (result, _) in self.pending.items():
            self._built(dim, result)
        self.pending.clear()

    def _built(self, dim: str, result: ClassResult) -> None:
        stored = self.classes.get(dim)
        if stored is not None:  # (a dimension the scheme dropped meanwhile has none)
            stored["explanation"] = result.explanation

    def keep_facts(self, dimensions: Sequence[str]) -> None:
        """Before a fact that may change what these dimensions read is folded in: their
        pending explanations will be built on a snapshot of the facts as they are, or
        now when the snapshot would cost more than building them (a long detail)."""
        waiting = [dim for dim in dimensions if dim in self.pending]
        if not waiting:
            return
        if self.facts.detail_size() > SNAPSHOT_MAX_DETAIL:
            for dim in waiting:
                self._built(dim, self.pending.pop(dim)[0])
            return
        kept = self.facts.snapshot()
        for dim in waiting:
            self.pending[dim][0].keep_facts(self.facts, kept)

    def needs_rebuild(self, scheme: CompiledScheme) -> bool:
        """True when the summary of the past does not fit this scheme (other points,
        or windows reaching before it): the facts must be rebuilt from the log."""
        past = self.facts.past
        if past is None:
            return False
        if past.spec != scheme.points_key:
            return True
        return self.evaluated_at is None or past.until > self.evaluated_at - scheme.horizon

    def active_overrides(self) -> dict[str, Override]:
        return overrides_from(self.overrides)


def motion_of(state: CustomerState, scheme: CompiledScheme, at: int) -> dict[str, list[Any]]:
    """How the values a reader sees (stored features, the checks of the stored
    explanations) move with time after `at`, for those that do."""
    names = set(scheme.stored_features)
    for stored in state.classes.values():
        names.update(c["feature"] for c in stored["explanation"].get("checks", ()))
    out: dict[str, list[Any]] = {}
    for name in sorted(names):
        feature = scheme.features.get(name)
        moving = feature.motion(state.facts, at) if feature is not None else None
        if moving is not None:
            out[name] = moving
    return out


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


# A pending explanation keeps a snapshot of the facts (CustomerState.keep_facts) while
# they hold at most this many orders and calls in detail (~0.5 µs each to copy, about
# a built explanation's cost at 200); beyond, it is built before the next fact instead.
SNAPSHOT_MAX_DETAIL = 200


# Compaction runs when the oldest detail is this far past the horizon (a fraction
# of the horizon, at least a week), so it folds a handful of facts at a time.
COMPACT_SLACK_DAYS = 7


# The facts document is written at least every this many facts (and at every
# rebuild or compaction); a load folds the logged facts after it. Between
# checkpoints a save writes the customer's classes and aggregates, not the
# detail of every order in its windows.
FACTS_CHECKPOINT_EVERY = 32


def compact(facts: CustomerFacts, scheme: CompiledScheme, evaluated_at: int) -> bool:
    """Fold facts that no window of the scheme can reach again into the summary;
    True when it did."""
    until = evaluated_at - scheme.horizon
    oldest = facts.oldest_detail()
    slack = max(COMPACT_SLACK_DAYS * DAY_US, scheme.horizon // 8)
    if oldest is not None and oldest < until - slack:
        facts.compact(until, scheme.points_key, scheme.points, period=scheme.cancellation_period)
        return True
    return False


def _to_evaluate(
    state: CustomerState, scheme: CompiledScheme, only: Sequence[str] | None
) -> list[str] | None:
    """The dimensions to evaluate: `only` (None: all), plus any without a class that
    holds under this scheme. A class stored under another version holds when its
    dimension's definition is the same (its fingerprint): activating a scheme that
    changes one threshold re-evaluates one dimension."""
    classes = state.classes
    if state.scheme_version == scheme.version:
        if only is None:
            return None
        return [d for d in scheme.dimensions if d in only or d not in classes]
    dims = []
    for name, dim in scheme.dimensions.items():
        stored = classes.get(name)
        carried = dim.carries and stored is not None and stored.get("def") == dim.fingerprint
        if not carried or (only is not None and name in only):
            dims.append(name)
    return dims


def reclassify(
    state: CustomerState,
    scheme: CompiledScheme,
    at: int,
    reason: ChangeReason,
    *,
    event_id: str | None = None,
    cutoffs: Mapping[str, Mapping[str, float]] | None = None,
    only: Sequence[str] | None = None,
    keep_prior: bool = True,
) -> list[Change]:
    """Evaluate the scheme at `at` (in every dimension, or those in `only` and any
    never evaluated under this scheme), store the results, and return what changed.

    `keep_prior=False` evaluates as if the customer held no class yet (no dwell
    time, no forward-only stage): after an unmerge, whose merged past was a mistake.

    An explanation is built only when the class, its rule or the values its
    checks saw changed; otherwise the stored one is kept.
    """
    dims = _to_evaluate(state, scheme, only)
    previous = {
        dim: PriorClass(c["class"], c["since"])
        for dim, c in (state.classes.items() if keep_prior else ())
    }
    result = evaluate(
        scheme,
        state.facts,
        at,
        previous=previous,
        cutoffs=cutoffs,
        overrides=state.active_overrides() if state.overrides else None,
        only=dims,
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
        # The explanation this dimension holds now: one still to be built (`pending`,
        # with the basis it was evaluated on) or the stored one.
        waiting = state.pending.pop(dim, None)
        held_checks = held_basis = None
        if waiting is not None:
            held_checks, held_basis = waiting[0].checks, waiting[1]
        elif old is not None:
            held_checks = old["explanation"].get("checks")
            held_basis = old["explanation"].get("basis")  # what `next` was built from
        if (
            old is not None
            and old_cls == res.cls
            and old["rule"] == res.rule != "override"
            and held_checks == res.checks
            and held_basis == res.basis
        ):
            explanation = old["explanation"]  # it says the same: kept
            if waiting is not None:
                state.pending[dim] = waiting
        elif res.rule == "override":
            explanation = res.explanation
        else:
            # Built when the state is settled, once: a later evaluation of the same
            # batch (a review, another event) usually replaces it before then.
            explanation = None
            state.pending[dim] = (res, res.basis)
        state.classes[dim] = {
            "class": res.cls,
            "since": since,
            "rule": res.rule,
            "scheme_version": scheme.version,
            "explanation": explanation,
            "review_at": result.flips[dim],
            "def": scheme.dimensions[dim].fingerprint,
        }
    if state.scheme_version != scheme.version:
        # Dimensions the scheme no longer has are dropped from the current view;
        # the classes carried over (same definition) now hold under this version.
        for dim in set(state.classes) - set(scheme.dimensions):
            del state.classes[dim]
            state.pending.pop(dim, None)
        for c in state.classes.values():
            c["scheme_version"] = scheme.version
    state.evaluation = result  # features are taken from it when the state is saved
    state.scheme_version = scheme.version
    state.evaluated_at = at
    state.next_review_at = _next_review(state, at)
    state.dirty = True
    return changes


def _review_at(c: dict[str, Any], fallback: int | None) -> int | None:
    # Classes stored before per-dimension review instants are due at the
    # customer's stored review instant.
    return c.get("review_at", fallback)


def _due(c: dict[str, Any], due: int) -> bool:
    r = _review_at(c, due)
    return r is not None and r <= due


def _next_review(state: CustomerState, at: int) -> int | None:
    """The earliest instant after `at` at which any dimension's class may change."""
    fallback = state.next_review_at
    due = [
        r for c in state.classes.values() if (r := _review_at(c, fallback)) is not None and r > at
    ]
    return min(due) if due else None


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
        # Only the dimensions due now: the others cannot change before their own instant.
        dims = [d for d, c in state.classes.items() if _due(c, due)]
        changes += reclassify(state, scheme, due, ChangeReason.TIME, cutoffs=cutoffs, only=dims)
    return changes


def apply_event(
    state: CustomerState,
    scheme: CompiledScheme,
    envelope: Envelope,
    event: ActivityEvent | Fact,
    *,
    cutoffs: Mapping[str, Mapping[str, float]] | None = None,
) -> list[Change]:
    """Catch up on time, fold the event's fact into the facts, and reclassify at its
    instant the dimensions that read what the fact changed."""
    at = to_micros(envelope.time)
    if state.evaluated_at is not None and at < state.evaluated_at:
        at = state.evaluated_at  # a late event is applied now, history never rewinds
    changes = review_until(state, scheme, at, cutoffs=cutoffs)
    fact = event if isinstance(event, Fact) else fact_of(event, envelope.source)
    if state.pending:
        state.keep_facts(scheme.dimensions_reading(state.facts.aspects_of(fact)))
    aspects = state.facts.apply_fact(fact)
    state.new_facts.append((fact, envelope.id))
    state.unsaved_facts += 1
    state.facts_changed = True
    state.last_event_id = envelope.id
    changes += reclassify(
        state,
        scheme,
        at,
        ChangeReason.EVENT,
        event_id=envelope.id,
        cutoffs=cutoffs,
        only=scheme.dimensions_reading(aspects),
    )
    return changes


def instant(us: int | None) -> Any:
    """Epoch µs to an aware datetime (None stays None), for storage."""
    return None if us is None else from_micros(us)
