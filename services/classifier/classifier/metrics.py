"""Prometheus metrics of the classifier: the worker's families and the API's, apart.

The worker process serves WORKER_REGISTRY (its own metrics port), the API
process API_REGISTRY (`/metrics`), so neither exports families the other
updates. Units are in the names (`_records`, `_seconds`); labels never carry
personal data.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from eventschemas.metrics import HttpMetrics, process_registry

WORKER_REGISTRY = process_registry()
API_REGISTRY = process_registry()

# --- the API process
HTTP = HttpMetrics("classifier", API_REGISTRY)  # classifier_http_requests_total, ..._seconds

# --- the worker process
EVENTS_CONSUMED = Counter(
    "classifier_events_consumed_total", "Events applied", ["type"], registry=WORKER_REGISTRY
)
DUPLICATES = Counter(
    "classifier_duplicate_events_total", "Redelivered events skipped", registry=WORKER_REGISTRY
)
SUPPRESSED_EVENTS = Counter(
    "classifier_suppressed_events_total",
    "Events of erased (suppressed) customers or identifiers, dropped",
    registry=WORKER_REGISTRY,
)
LANE_MERGES = Counter(
    "classifier_identity_lane_merges_total",
    "Merge events applied by the identity lane ahead of the activity backlog",
    registry=WORKER_REGISTRY,
)
DLQ_EVENTS = Counter(
    "classifier_dlq_events_total", "Events sent to the DLQ", ["reason"], registry=WORKER_REGISTRY
)
BATCH_SIZE = Histogram(
    "classifier_batch_size_records",
    "Events per processed batch",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
    registry=WORKER_REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "classifier_batch_seconds",
    "Time to apply one batch (transaction included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=WORKER_REGISTRY,
)
CLASS_CHANGES = Counter(
    "classifier_class_changes_total",
    "Class changes recorded",
    ["dimension", "reason"],
    registry=WORKER_REGISTRY,
)
CHANGES_PUBLISHED = Counter(
    "classifier_changes_published_total", "Changes relayed to Kafka", registry=WORKER_REGISTRY
)
CONSUMER_LAG = Gauge(
    "classifier_consumer_lag_records",
    "Records between the last committed offset and the log end, per partition",
    ["topic", "partition"],
    registry=WORKER_REGISTRY,
)
CONSUMER_LAG_SECONDS = Gauge(
    "classifier_consumer_lag_seconds",
    "Age of the last applied record while the partition is behind (0 when caught up)",
    ["topic", "partition"],
    registry=WORKER_REGISTRY,
)
DB_RETRIES = Counter(
    "classifier_db_retries_total",
    "Batches retried after a database error",
    registry=WORKER_REGISTRY,
)

# Operations (alerts and the dashboard in deploy/helm/customer-classifier/files).
REVIEW_LAG = Histogram(
    "classifier_review_lag_seconds",
    "Time-driven changes: from the instant a class fell due to its review",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=WORKER_REGISTRY,
)
OUTBOX_OLDEST_AGE = Gauge(
    "classifier_outbox_oldest_age_seconds",
    "Age of the oldest class change not yet relayed to Kafka (0: outbox empty)",
    registry=WORKER_REGISTRY,
)
DB_POOL_IN_USE = Gauge(
    "classifier_db_pool_in_use_connections",
    "Database connections checked out of the pool",
    registry=WORKER_REGISTRY,
)
DB_POOL_MAX = Gauge(
    "classifier_db_pool_max_connections",
    "Most connections the pool opens (size + overflow)",
    registry=WORKER_REGISTRY,
)
