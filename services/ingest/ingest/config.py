"""Settings of the ingest service: the one place that reads the environment."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", populate_by_name=True, extra="ignore")

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
    publish_timeout_seconds: float = 10.0
    retry_after_seconds: int = 5
