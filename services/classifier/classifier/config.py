"""Settings of the classifier service: the one place that reads the environment."""

from __future__ import annotations

from pydantic import AliasChoices, AwareDatetime, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventschemas.keycache import DEFAULT_TTL_SECONDS
from eventschemas.topics import ACTIVITY_DLQ_TOPIC, ACTIVITY_TOPIC, CLASS_CHANGES_TOPIC


def _shared(name: str) -> AliasChoices:
    return AliasChoices(name.upper(), name.lower())


class ClassifierSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLASSIFIER_", populate_by_name=True, extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = 8002
    database_url: str = Field(
        default="postgresql+asyncpg://classifier@127.0.0.1:5432/classifier",
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=_shared("kafka_bootstrap_servers")
    )
    activity_topic: str = Field(
        default=ACTIVITY_TOPIC,
        validation_alias=AliasChoices("KAFKA_ACTIVITY_TOPIC", "activity_topic"),
    )
    class_changes_topic: str = Field(
        default=CLASS_CHANGES_TOPIC,
        validation_alias=AliasChoices("KAFKA_CLASS_CHANGES_TOPIC", "class_changes_topic"),
    )
    dlq_topic: str = Field(
        default=ACTIVITY_DLQ_TOPIC, validation_alias=AliasChoices("KAFKA_DLQ_TOPIC", "dlq_topic")
    )
    activity_partitions: int = 6
    class_changes_partitions: int = 6
    dlq_partitions: int = 1
    topic_replication_factor: int = Field(
        default=1, ge=1, description="Replicas of topics `python -m classifier.topics` creates."
    )
    consumer_group: str = "classifier-worker"
    batch_max_records: int = 2000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    poll_timeout_ms: int = Field(
        default=1000,
        description="Longest wait for records in one poll; records end it at once, so this "
        "only bounds how often an idle worker re-checks its partitions.",
    )
    relay_idle_seconds: float = Field(
        default=30.0,
        description="An idle relay wakes on NOTIFY; this is only the fallback poll interval.",
    )
    relay_batch_size: int = 1000
    state_cache_size: int = Field(
        default=20_000,
        ge=0,
        description="Customer states a worker keeps in memory between batches (0: none). A "
        "cached state is used only while its stored row is unchanged.",
    )
    inbox_retention_hours: float = Field(
        default=192.0,
        gt=0,
        description="Inbox rows (applied event ids) older than this are deleted: Kafka can no "
        "longer redeliver them. Keep it above the activity topic's retention.ms (7 days by "
        "default) plus the longest consumer outage you want duplicates caught across.",
    )
    inbox_prune_interval_seconds: float = Field(default=3600.0, gt=0)
    review_interval_seconds: float = Field(
        default=1.0,
        description="How often the scheduler compares the clock with the earliest due "
        "review (no I/O); it sleeps until that instant otherwise.",
    )
    review_max_sleep_seconds: float = Field(
        default=30.0,
        description="Longest the scheduler trusts its earliest due instant before reading it "
        "again (it is woken sooner by batches and NOTIFY).",
    )
    review_batch_size: int = 500
    cutoffs_interval_seconds: float = Field(
        default=300.0,
        description="Population cut-offs (ABC tiers) are recomputed at least this often.",
    )
    cutoffs_bulk_events: int = Field(
        default=10_000, description="...and after this many applied events, once caught up."
    )
    cutoffs_population_share: float = Field(
        default=0.05,
        ge=0,
        description="...and once the events applied since the last computation reach this "
        "share of the population (0: off). A fresh stack's first orders qualify at once.",
    )
    cutoffs_on_start: bool = Field(
        default=True,
        description="Compute population cut-offs once a starting worker has consumed its "
        "backlog (a fresh stack ranks its first customers at once).",
    )
    cutoffs_min_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Least time between two computations triggered by start-up, an "
        "activation or the population share (a burst of events waits this long).",
    )
    job_chunk_size: int = Field(
        default=1000, ge=1, description="Customers a job re-evaluates per transaction."
    )
    job_chunks_in_flight: int = Field(
        default=2,
        ge=1,
        description="Chunks a job runs at once (each its own transaction): while one "
        "waits for the database, the next is evaluated.",
    )
    job_stale_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A running job whose heartbeat is older than this is taken over (its "
        "worker died) and resumes from its cursor.",
    )
    job_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often a running job renews its claim."
    )
    job_idle_seconds: float = Field(
        default=5.0,
        gt=0,
        description="An idle job runner wakes on NOTIFY; this is only the fallback poll "
        "(it also notices jobs left by dead workers).",
    )
    job_max_attempts: int = Field(
        default=5, ge=1, description="Claims after which a job that keeps dying is failed."
    )
    db_retry_max_seconds: float = Field(
        default=2.0,
        description="Longest wait between retries of a batch while the database is down.",
    )
    db_pool_size: int = 10
    # Single lookups running at once per API process; lookups arriving meanwhile
    # share the next query (customers/reads.py Reader).
    lookup_queries_in_flight: int = 2
    db_timeout_seconds: float = Field(
        default=30.0,
        description="The worker's bound on one statement (server statement_timeout, client "
        "command timeout, connect and pool acquisition).",
    )
    api_db_timeout_seconds: float = Field(
        default=5.0,
        description="The same bound for the API's requests; beyond it they answer 503.",
    )
    log_level: str = "INFO"
    auth_enabled: bool = Field(
        default=True, description="Require API keys on /v1 (health endpoints stay open)."
    )
    api_key_cache_seconds: float = Field(
        default=DEFAULT_TTL_SECONDS,
        ge=0,
        description="How long a verified key is trusted before re-checking: a revoked key "
        "is refused after at most this.",
    )
    body_timeout_seconds: float = Field(
        default=30, gt=0, description="Longest wait for the next chunk of a request body (408)."
    )
    cors_origins: str = Field(default="", description="Comma-separated allowed origins, or *.")
    console_session_hours: float = Field(
        default=8,
        gt=0,
        description="How long a console sign-in lasts (the session cookie's lifetime).",
    )
    max_lookup_ids: int = 1000
    identity_key: SecretStr | None = Field(
        default=None,
        description="The secret ingest digests e-mails and phones with (INGEST_IDENTITY_KEY): "
        "used here only for events written before digests, which carry the values.",
    )
    default_phone_region: str = Field(
        default="CN",
        min_length=2,
        max_length=2,
        description="Region of phone numbers given without a country code (erasures, "
        "suppressions), as ingest's INGEST_DEFAULT_PHONE_REGION.",
    )
    identity_ambiguous_after: int = Field(
        default=20,
        ge=1,
        description="An e-mail or phone seen with more customer ids than this is ambiguous "
        "(a switchboard, an info@ mailbox): it merges nothing any more.",
    )
    identity_lane: bool = Field(
        default=True,
        description="Apply merge events as soon as they are published, ahead of the "
        "activity backlog (consumer/identity_lane.py); the main consumer applies them anyway.",
    )
    worker_metrics_port: int = Field(default=9102, description="0 disables the worker's /metrics")
    clock_offset_seconds: float = Field(
        default=0.0, description="Shifts the worker's clock; for tests and demos only."
    )
    clock_frozen_at: AwareDatetime | None = Field(
        default=None, description="Stops the worker's clock at this instant; tests only."
    )
    # --- outbound webhooks (classifier.webhooks; README: Webhooks)
    webhook_consumer_group: str = Field(
        default="classifier-webhooks",
        description="The dispatcher's own consumer group on the class-change topic.",
    )
    webhook_metrics_port: int = Field(
        default=9104, description="The dispatcher's /metrics port (0 disables it)."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest one delivery attempt may take (connect to body)."
    )
    webhook_max_in_flight: int = Field(
        default=16,
        ge=1,
        description="Deliveries in flight per subscription (and dispatcher process) at most.",
    )
    webhook_retry_schedule_seconds: list[float] = Field(
        default=[5, 60, 300, 1800, 3600, 7200, 14400, 28800, 28800],
        min_length=1,
        description="Waits before each retry (±jitter): 9 retries over about 23.6 h; after "
        "the last one fails the delivery is dead.",
    )
    webhook_retry_jitter: float = Field(
        default=0.2, ge=0, le=1, description="Each wait is scaled by a random 1 ± this."
    )
    webhook_allow_hosts: str = Field(
        default="",
        description="Comma-separated host names, IP addresses or CIDR networks that may be "
        "targets although private or loopback, and over plain http (tests, an internal "
        "receiver). Empty: only https to public addresses.",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow https targets in private networks (10/8, 172.16/12, 192.168/16, "
        "fc00::/7); loopback, link-local and reserved addresses stay refused.",
    )
    webhook_poll_seconds: float = Field(
        default=1.0, gt=0, description="Longest an idle delivery loop sleeps before looking again."
    )
    webhook_secret_overlap_hours: float = Field(
        default=24.0, ge=0, description="How long a rotated-out secret still signs by default."
    )
    webhook_batch_max_records: int = Field(default=500, ge=1)
    scheme_file: str | None = Field(
        default=None, description="YAML scheme to seed as version 1; the shipped default if unset."
    )
