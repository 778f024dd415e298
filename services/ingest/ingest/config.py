"""Settings of the ingest service: the one place that reads the environment."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from pydantic import AliasChoices, AwareDatetime, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventschemas.keycache import DEFAULT_TTL_SECONDS
from eventschemas.topics import ACTIVITY_TOPIC

# Units of the base currency per unit of each currency. Operators override the
# table with INGEST_FX_RATES='{"EUR": "1.08", ...}'; a currency not listed is rejected.
DEFAULT_FX_RATES: dict[str, Decimal] = {
    "USD": Decimal("1"),
    "EUR": Decimal("1.08"),
    "GBP": Decimal("1.27"),
    "CNY": Decimal("0.138"),
    "HKD": Decimal("0.128"),
    "JPY": Decimal("0.0067"),
    "SGD": Decimal("0.74"),
    "CAD": Decimal("0.73"),
    "AUD": Decimal("0.66"),
    "CHF": Decimal("1.13"),
}


MIN_IDENTITY_KEY_CHARS = 32


class IngestSettings(BaseSettings):
    # hide_input_in_errors: a refused setting is never echoed (it may be a secret).
    model_config = SettingsConfigDict(
        env_prefix="INGEST_", populate_by_name=True, extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = 8001
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    activity_topic: str = Field(
        default=ACTIVITY_TOPIC,
        validation_alias=AliasChoices("KAFKA_ACTIVITY_TOPIC", "activity_topic"),
    )
    source: str = Field(default="ingest", description="CloudEvents `source` of API intake.")
    base_currency: str = "USD"
    fx_rates: dict[str, Decimal] = Field(default_factory=lambda: dict(DEFAULT_FX_RATES))
    max_clock_skew_seconds: int = 300
    earliest_instant: AwareDatetime = Field(
        default=datetime(1990, 1, 1, tzinfo=UTC),
        description="Facts dated before this are refused (422): a typo, not history.",
    )
    identity_key: SecretStr = Field(
        default=SecretStr(""),
        validate_default=True,
        description="Key of the identity digests (HMAC-SHA256 of phone and e-mail), at least "
        f"{MIN_IDENTITY_KEY_CHARS} characters; the classifier's CLASSIFIER_IDENTITY_KEY must be "
        "the same secret. Required: ingest refuses to start without it.",
    )
    default_phone_region: str = Field(
        default="CN", description="Country of phone numbers given without a +country code."
    )
    publish_timeout_seconds: float = 10.0
    retry_after_seconds: int = 5
    log_level: str = "INFO"

    # Request size limits (bytes): JSON bodies and webhooks, and CSV uploads.
    max_body_bytes: int = 5 * 1024 * 1024
    max_import_bytes: int = 200 * 1024 * 1024
    # One event on the topic: below the broker's message.max.bytes (1 MiB by default).
    max_event_bytes: int = 1_000_000
    # One CSV line (a field can never be longer than its line).
    max_csv_line_bytes: int = 64 * 1024

    # CRM webhooks. A source whose secret is unset is disabled (404).
    webhook_max_age_seconds: int = 300
    public_base_url: str | None = Field(
        default=None,
        description="Scheme and host the CRMs call (e.g. behind a TLS proxy); HubSpot "
        "signs the full URL it called.",
    )
    generic_webhook_secret: SecretStr | None = None
    hubspot_client_secret: SecretStr | None = None
    salesforce_organization_ids: str = Field(
        default="", description="Comma-separated ids of the Salesforce orgs allowed to send."
    )
    zoho_webhook_token: SecretStr | None = None
    # WeCom (企业微信) callbacks: the token and EncodingAESKey set with the callback URL.
    wecom_token: SecretStr | None = None
    wecom_encoding_aes_key: SecretStr | None = Field(
        default=None, description="The 43-character EncodingAESKey of the callback."
    )
    wecom_corp_id: str | None = Field(default=None, description="Your corp id (CorpID).")

    # Fxiaoke (纷享销客) incremental sync (`ingest fxiaoke run|sync`): a custom app's
    # credentials, the user the queries run as, and the database keeping the cursors.
    fxiaoke_base_url: str = "https://open.fxiaoke.com"
    fxiaoke_app_id: str | None = None
    fxiaoke_app_secret: SecretStr | None = None
    fxiaoke_permanent_code: SecretStr | None = None
    fxiaoke_open_user_id: str | None = Field(
        default=None, description="currentOpenUserId: a user allowed to read the objects."
    )
    fxiaoke_mapping_file: Path | None = Field(
        default=None, description="YAML mapping of objects and (custom) fields; see README."
    )
    fxiaoke_page_size: int = Field(default=100, ge=1, le=1000)
    fxiaoke_poll_interval_seconds: float = Field(default=60, gt=0)
    fxiaoke_timeout_seconds: float = 30
    fxiaoke_token_expired_codes: list[int] = Field(default_factory=lambda: [20016])
    fxiaoke_rate_limit_codes: list[int] = Field(default_factory=lambda: [20014, 20015])
    fxiaoke_backoff_seconds: float = Field(default=2.0, gt=0)
    fxiaoke_max_backoff_seconds: float = 300
    fxiaoke_max_retries: int = 8
    fxiaoke_metrics_port: int = Field(
        default=9103, description="Prometheus /metrics of the sync process; 0 = none."
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("INGEST_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="PostgreSQL of the classifier: API keys, intake fingerprints (re-sends "
        "that differ are a 409) and the Fxiaoke sync cursors.",
    )

    # Intake keys (`Authorization: Bearer`), one key store with the classifier's.
    auth_enabled: bool = Field(
        default=True, description="Require an API key with a *:write scope on intake."
    )
    api_key_cache_seconds: float = Field(
        default=DEFAULT_TTL_SECONDS,
        ge=0,
        description="A verified key is trusted this long: a revoked key is refused after "
        "at most this (and a changed quota applies).",
    )
    database_timeout_seconds: float = Field(
        default=2, gt=0, description="Bound of one key lookup or fingerprint write (then 503)."
    )
    database_pool_size: int = Field(default=10, ge=1)
    # A key's quota when the key sets none (`classifier api-keys create --rate --burst`).
    default_rate_per_second: float = Field(default=500, ge=0, description="0: no limit.")
    default_burst: int = Field(default=1000, ge=1)
    conflict_check: bool = Field(
        default=True,
        description="Answer 409 to a re-send of a natural id and revision with another "
        "payload (needs the database).",
    )
    fingerprint_retention_days: float = Field(
        default=90, ge=0, description="Re-sends are compared this long; 0: records kept for ever."
    )
    suppression_check: bool = Field(
        default=True,
        description="Leave out (and answer `suppressed`) events of erased customers and "
        "identifiers (table `suppressions`; needs the database).",
    )
    keep_free_text: bool = Field(
        default=False,
        description="Publish call notes and other free text; by default ingest drops them "
        "(minimal data: the rules use outcome and intent, not the text).",
    )
    body_timeout_seconds: float = Field(
        default=30, gt=0, description="Longest wait for the next chunk of a request body (408)."
    )

    @field_validator("identity_key")
    @classmethod
    def _identity_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_IDENTITY_KEY_CHARS:
            raise ValueError(
                f"INGEST_IDENTITY_KEY must be set to a secret of at least "
                f"{MIN_IDENTITY_KEY_CHARS} characters (e.g. `openssl rand -hex 32`), the same "
                "as the classifier's CLASSIFIER_IDENTITY_KEY; `make up` makes one per stack"
            )
        return value

    def identity_key_bytes(self) -> bytes:
        """The HMAC key of identity digests: the UTF-8 bytes of INGEST_IDENTITY_KEY as given."""
        return self.identity_key.get_secret_value().encode()

    @field_validator("wecom_encoding_aes_key")
    @classmethod
    def _aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = value.get_secret_value()
            try:
                ok = len(raw) == 43 and len(base64.b64decode(raw + "=", validate=True)) == 32
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("an EncodingAESKey is 43 characters of base64 (a 32-byte key)")
        return value

    def salesforce_orgs(self) -> set[str]:
        """Allowed org ids, as their case-sensitive 15-character form."""
        return {o.strip()[:15] for o in self.salesforce_organization_ids.split(",") if o.strip()}
