"""Prometheus metrics of the ingest service. Labels never carry personal data."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from eventschemas.metrics import HttpMetrics, process_registry

# The ingest process's own registry: /metrics serves this and nothing else.
REGISTRY = process_registry()
HTTP = HttpMetrics("ingest", REGISTRY)  # ingest_http_requests_total, ..._duration_seconds
EVENTS_PUBLISHED = Counter(
    "ingest_events_published_total",
    "Events acknowledged by the broker",
    ["type"],
    registry=REGISTRY,
)
PUBLISH_LATENCY = Histogram(
    "ingest_publish_seconds",
    "Time from hand-over to broker acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
REJECTS = Counter(
    "ingest_rejects_total",
    "Requests or items refused, by reason (problem type)",
    ["reason"],
    registry=REGISTRY,
)

FXIAOKE_RECORDS = Counter(
    "ingest_fxiaoke_records_total", "Fxiaoke records read by the sync, by object", ["object"]
)
FXIAOKE_PASSES = Counter(
    "ingest_fxiaoke_sync_passes_total", "Fxiaoke sync passes, by outcome", ["outcome"]
)
FXIAOKE_SUPPRESSED = Counter(
    "ingest_fxiaoke_suppressed_events_total",
    "Fxiaoke events left out (not published) because their customer or identifier was erased",
)
FXIAOKE_LAST_SUCCESS = Gauge(
    "ingest_fxiaoke_last_success_timestamp_seconds", "When a Fxiaoke sync pass last completed"
)

RATE_LIMITED_REQUESTS = Counter(
    "ingest_rate_limited_requests_total",
    "Intake requests refused (429) because their API key was over its quota",
    ["key_id"],
)
RATE_LIMITED_EVENTS = Counter(
    "ingest_rate_limited_events_total",
    "Events refused (not published) because their API key was over its quota",
    ["key_id"],
)
SUPPRESSED_EVENTS = Counter(
    "ingest_suppressed_events_total",
    "Events left out (not published) because their customer or identifier was erased",
    registry=REGISTRY,
)
