"""Prometheus metrics of the classifier (worker and API)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter("classifier_events_consumed_total", "Events applied", ["type"])
DUPLICATES = Counter("classifier_duplicate_events_total", "Redelivered events skipped")
DLQ_EVENTS = Counter("classifier_dlq_events_total", "Events sent to the DLQ", ["reason"])
BATCH_SIZE = Histogram(
    "classifier_batch_size",
    "Events per processed batch",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
PROCESSING_SECONDS = Histogram(
    "classifier_batch_seconds",
    "Time to apply one batch (transaction included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CLASS_CHANGES = Counter(
    "classifier_class_changes_total", "Class changes recorded", ["dimension", "reason"]
)
CHANGES_PUBLISHED = Counter("classifier_changes_published_total", "Changes relayed to Kafka")
CONSUMER_LAG = Gauge("classifier_consumer_lag", "Records behind the log end", ["partition"])
DB_RETRIES = Counter("classifier_db_retries_total", "Batches retried after a database error")

# Operations (alerts and the dashboard in deploy/helm/customer-classifier/files).
REVIEW_LAG = Histogram(
    "classifier_review_lag_seconds",
    "Time-driven changes: from the instant a class fell due to its review",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
OUTBOX_OLDEST_AGE = Gauge(
    "classifier_outbox_oldest_age_seconds",
    "Age of the oldest class change not yet relayed to Kafka (0: outbox empty)",
)
DB_POOL_IN_USE = Gauge(
    "classifier_db_pool_in_use_connections", "Database connections checked out of the pool"
)
DB_POOL_MAX = Gauge(
    "classifier_db_pool_max_connections", "Most connections the pool opens (size + overflow)"
)
