"""The one settings object: every knob of CES, read from `CES_*` environment variables."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Defaults are the local stack's (`ces stack up`); override any of them with `CES_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="CES_", extra="ignore")

    # Connections. The managed local stack listens on these; point them elsewhere to use
    # existing services (the stack then leaves those alone).
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql+psycopg2://ces:ces@127.0.0.1:15432/ces"
    redis_url: str = "redis://127.0.0.1:16379/0"

    # Where `ces stack` keeps binaries, data, logs and pid files (git-ignored).
    stack_dir: Path = Path(".stack")

    # Kafka topics CES creates. A prefix isolates several CES deployments (or test runs) on one cluster.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    # Worker.
    app_id: str = "ces"
    worker_web_port: int = 6066
    log_level: str = "INFO"

    # Rates ingestion.
    fetch_interval_seconds: float = Field(default=3600.0, gt=0)

    # Conversions.
    default_margin: Decimal = Decimal("0.01")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
