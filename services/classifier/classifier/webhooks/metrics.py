"""Prometheus metrics of the webhook dispatcher (its own process and registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from eventschemas.metrics import process_registry

DISPATCHER_REGISTRY = process_registry()

DELIVERIES = Counter(
    "classifier_webhook_deliveries_total",
    "Delivery attempts by outcome: delivered, retry (failed, a retry is scheduled), dead "
    "(no attempts left), gone (410: subscription disabled)",
    ["outcome"],
    registry=DISPATCHER_REGISTRY,
)
FAILURES = Counter(
    "classifier_webhook_failures_total",
    "Failed attempts by cause: http_4xx, http_5xx, http_other, timeout, connect, refused",
    ["cause"],
    registry=DISPATCHER_REGISTRY,
)
QUEUED = Gauge(
    "classifier_webhook_queue_deliveries",
    "Open deliveries: pending (not tried yet) and failed (the retry queue)",
    ["status"],
    registry=DISPATCHER_REGISTRY,
)
LATENCY = Histogram(
    "classifier_webhook_delivery_latency_seconds",
    "From a change reaching the class-change topic to its receiver's 2xx",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 86400),
    registry=DISPATCHER_REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "classifier_webhook_attempt_seconds",
    "Duration of one delivery attempt",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=DISPATCHER_REGISTRY,
)
MATCHED = Counter(
    "classifier_webhook_changes_matched_total",
    "Deliveries created from class changes (one per matching subscription)",
    registry=DISPATCHER_REGISTRY,
)

# Every label value from the start, so rates and alerts see zeros, not absent series.
for _outcome in ("delivered", "retry", "dead", "gone"):
    DELIVERIES.labels(_outcome)
for _cause in ("http_4xx", "http_5xx", "http_other", "timeout", "connect", "refused"):
    FAILURES.labels(_cause)
