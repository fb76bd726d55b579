"""The one settings object: every knob of CES, read from `CES_*` environment variables."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Defaults are the local stack's (`cesdev stack up`); override any of them with `CES_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="CES_", extra="ignore")

    # Connections. The managed local stack listens on these; point them elsewhere to use
    # existing services (the stack then leaves those alone). Passwords are SecretStr (masked in every
    # repr); a password written inline in a URL is moved into its *_password field at load time, so
    # the URL fields never carry one (docs/security.md). The local stack's generated passwords are in
    # `<stack_dir>/secrets/<principal>.env` (mode 0600), which `cesdev` feeds to the processes it starts.
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "SASL_PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: Path | None = None  # SASL_SSL: the CA that signed the brokers' certificates
    # What CES's producers compress their batches with (docs/replay.md, "Compression"): zstd made the kept-
    # forever audit topic about 5 times smaller for ~5 us of producer CPU per event, and reads no slower.
    kafka_compression: Literal["none", "gzip", "lz4", "zstd"] = "zstd"
    # The application role (worker, gateway): SELECT/INSERT on the insert-only tables, nothing more.
    database_url: str = "postgresql+psycopg2://ces_app@127.0.0.1:15432/ces"
    database_password: SecretStr = SecretStr("")
    # The owner role: runs migrations (`ces db upgrade`) and replays (schemas, swaps); owns every object.
    migration_database_url: str = "postgresql+psycopg2://ces_owner@127.0.0.1:15432/ces"
    migration_database_password: SecretStr = SecretStr("")
    # The role the migrations grant the application's privileges to.
    database_app_role: str = "ces_app"
    redis_url: str = "redis://ces@127.0.0.1:16379/0"
    redis_password: SecretStr = SecretStr("")
    # The gateway signs every conversion request it produces with this key (HMAC-SHA256, a Kafka header) and
    # the worker believes a request's `requested_by` only with a valid signature (docs/security.md). Both hold
    # the same key; the worker also accepts the comma-separated previous keys while a rotation rolls out.
    request_signing_key: SecretStr = SecretStr("")
    request_signing_keys_previous: SecretStr = SecretStr("")

    # Where `cesdev stack` keeps binaries, data, logs and pid files (git-ignored).
    stack_dir: Path = Path(".stack")

    # Kafka topics CES creates. A prefix isolates several CES deployments (or test runs) on one cluster.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    # Worker.
    app_id: str = "ces"
    worker_web_port: int = 6066
    # Faust's data directory. CES keeps no Faust tables (memory store), but Faust still creates
    # `<dir>/<app id>-data`; keep it out of the working directory.
    worker_data_dir: Path = Path(tempfile.gettempdir()) / "ces-worker"
    log_level: str = "INFO"
    # The gateway's and the worker's event loop. uvloop (libuv) does the same socket and scheduling work
    # as asyncio's with less CPU per request (measured: docs/http.md); "asyncio" is the stdlib fallback.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # Failure policy of the batch consumers (`ces.adapters.failures`): a message whose handling raises
    # an unexpected error is retried this many times, then dead-lettered as `handler_error`.
    handler_max_attempts: int = Field(default=5, ge=1)
    # Kafka group membership of the worker's consumers: how long a worker that died without leaving
    # (kill -9, power loss) keeps its partitions before the group hands them to another member.
    consumer_session_timeout_ms: int = Field(default=10_000, ge=6_000)
    consumer_heartbeat_interval_ms: int = Field(default=2_000, ge=500)

    # Gateway API keys (`ces keys create`): required on every route but health, docs and (by default)
    # metrics. A verified key is cached this long, so a revocation takes effect within it.
    api_keys_required: bool = True
    api_key_cache_seconds: float = Field(default=10.0, ge=0)
    metrics_require_key: bool = False
    # Per-key token bucket in Redis, shared by every gateway instance.
    rate_limit_per_second: float = Field(default=1000.0, gt=0)
    rate_limit_burst: int = Field(default=2000, ge=1)
    # Spare tokens a gateway instance may take from a busy key's bucket in one Redis call and spend locally
    # (within 1 s): N instances may admit up to N x this many requests above the bucket (docs/security.md).
    # 0: one Redis call per request, exact. 100, not 10: a call per ~11 requests cost 15-30% more CPU per
    # request in every process at c=8 and c=32 (docs/http.md, "The token bucket's lease: 10 -> 100").
    rate_limit_lease: int = Field(default=100, ge=0)

    # Redis keys: the latest rate of a pair is at `<prefix>BASE:TARGET`.
    redis_key_prefix: str = ""
    # The worker holds the rates it confirmed and learns of changes by Redis's invalidation pushes (CLIENT
    # TRACKING, BCAST on the key prefix) instead of asking Redis on every batch; it trusts them only while the
    # tracking connection answered within 2 x the heartbeat (docs/http.md, "Rates held in the worker").
    rate_tracking: bool = True
    rate_tracking_heartbeat_seconds: float = Field(default=0.5, gt=0, le=30)

    # Rate providers. `ecb` reads the ECB daily reference-rate XML feed, `fixer` a Fixer-compatible
    # JSON API. The default URL is the local simulator (`cesdev provider-sim`); the real ECB feed is
    # https://www.ecb.europa.eu (same paths).
    provider: Literal["ecb", "fixer"] = "ecb"
    provider_url: str = "http://127.0.0.1:8090"
    provider_access_key: SecretStr = SecretStr("sim-key")  # Fixer: travels in the query string, masked everywhere
    provider_base: str = "EUR"
    provider_symbols: str = ""  # comma-separated; empty means every currency the provider has
    provider_sim_host: str = "127.0.0.1"
    provider_sim_port: int = 8090

    # Rates ingestion.
    fetch_interval_seconds: float = Field(default=3600.0, gt=0)
    fetch_timeout_seconds: float = Field(default=10.0, gt=0)
    fetch_max_attempts: int = Field(default=5, ge=1)
    fetch_backoff_initial_seconds: float = Field(default=1.0, ge=0)
    fetch_backoff_max_seconds: float = Field(default=60.0, ge=0)
    fetch_max_total_seconds: float = Field(default=300.0, gt=0)
    # After a fetch that failed (retries exhausted), the next one comes this long after, within the
    # interval (capped at the interval).
    fetch_retry_seconds: float = Field(default=60.0, gt=0)
    projection_batch_size: int = Field(default=2000, ge=1)
    # How far a rate's published_at may lie ahead of the time it was fetched (the provider's clock running
    # ahead of ours). Beyond it the provider's quote is an error and a RateFetched is dead-lettered
    # (`implausible_published_at`): a future-dated rate would otherwise stay "the newest" forever.
    max_clock_skew_seconds: int = Field(default=300, ge=0)

    # Conversions.
    default_margin: Decimal = Field(default=Decimal("0.01"), ge=0, lt=1)
    # Per-pair margins, JSON: CES_MARGIN_OVERRIDES='{"USD:NGN": "0.02"}'.
    margin_overrides: dict[str, Decimal] = Field(default_factory=dict)
    # ECB rates are published on TARGET business days at 16:00 CET; the longest gap (Easter, some
    # Christmases) is 5 days. 6 days leaves a day for a provider outage.
    max_rate_age_seconds: int = Field(default=6 * 24 * 3600, gt=0)
    max_amount: Decimal = Field(default=Decimal("1000000000000"), gt=0)  # in base currency units
    conversion_batch_size: int = Field(default=2000, ge=1)
    # Conversion batches handled at once (memory: this x conversion_batch_size records). More overlap a
    # batch's database and broker waits with the next; fewer let requests gather into larger batches
    # (less CPU per request) when the machine, not the waiting, is the limit (docs/http.md).
    conversion_batches_in_flight: int = Field(default=8, ge=1, le=64)

    # HTTP gateway.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    gateway_timeout_seconds: float = Field(default=10.0, gt=0)
    gateway_max_pending: int = Field(default=10_000, ge=1)  # requests awaiting a result, per instance
    gateway_max_body_bytes: int = Field(default=16 * 1024, ge=256)
    # How long the gateway's producer waits to batch requests. None: aiokafka sends one request per broker
    # at a time, so under load records gather while the previous send is in flight anyway, and at light
    # load every millisecond of linger was in each round trip, and more (docs/http.md, "Producer linger").
    gateway_linger_ms: int = Field(default=0, ge=0, le=100)
    # The same for the worker's producer (results, dead letters, rates).
    worker_linger_ms: int = Field(default=0, ge=0, le=100)
    # What the gateway's producer compresses its requests with ("inherit": CES_KAFKA_COMPRESSION). A request is
    # one ~330-byte record per produce request at light load, which zstd shrinks by a quarter for ~3% of the
    # gateway's CPU per POST (docs/http.md, "The gateway's CPU per request, sixth pass").
    gateway_compression: Literal["inherit", "none", "gzip", "lz4", "zstd"] = "none"
    gateway_processes: int = Field(default=1, ge=1, le=64)  # `ces gateway --processes N` overrides
    # POST /v1/conversions/batch (docs/http.md, "Batches"): its own body limit, item limit and a deadline
    # that grows with the batch (gateway_timeout_seconds + items * gateway_batch_seconds_per_item).
    gateway_max_batch_items: int = Field(default=10_000, ge=1, le=100_000)
    gateway_max_batch_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    gateway_batch_seconds_per_item: float = Field(default=0.002, ge=0)

    @model_validator(mode="after")
    def _passwords_out_of_urls(self) -> Settings:
        for url_field, password_field in _URL_PASSWORDS:
            url, password = _split_password(getattr(self, url_field))
            if password is not None:
                object.__setattr__(self, url_field, url)
                if not getattr(self, password_field).get_secret_value():
                    object.__setattr__(self, password_field, SecretStr(password))
        return self

    @model_validator(mode="after")
    def _signing_keys_long_enough(self) -> Settings:
        short = [k for k in self.signing_keys if len(k) < MIN_SIGNING_KEY_CHARS]
        if short:
            raise ValueError(
                f"CES_REQUEST_SIGNING_KEY(S_PREVIOUS): every key needs at least {MIN_SIGNING_KEY_CHARS} characters"
            )
        return self

    @property
    def signing_keys(self) -> list[bytes]:
        """Every key a worker accepts, the current one first; empty when none is set."""
        keys = [self.request_signing_key.get_secret_value()]
        keys += self.request_signing_keys_previous.get_secret_value().split(",")
        return [k.strip().encode() for k in keys if k.strip()]

    @property
    def database_dsn(self) -> str:
        """The application role's URL with its password: for create_engine, never for printing."""
        return _with_password(self.database_url, self.database_password)

    @property
    def migration_database_dsn(self) -> str:
        """The owner role's URL with its password: migrations, replays, test fixtures' schemas."""
        return _with_password(self.migration_database_url, self.migration_database_password)

    @property
    def redis_dsn(self) -> str:
        return _with_password(self.redis_url, self.redis_password)


MIN_SIGNING_KEY_CHARS = 32

_URL_PASSWORDS = (
    ("database_url", "database_password"),
    ("migration_database_url", "migration_database_password"),
    ("redis_url", "redis_password"),
)


def _split_password(url: str) -> tuple[str, str | None]:
    """`url` without the password of its userinfo, and that password (None if it had none)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}@{host}" if user else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def _with_password(url: str, password: SecretStr) -> str:
    from urllib.parse import quote, urlsplit, urlunsplit

    secret = password.get_secret_value()
    if not secret:
        return url
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(secret, safe='')}@{host}"))


def mask_secrets(text: str, settings: Settings) -> str:
    """`text` with every secret of `settings` replaced by ***: for error messages that quote a URL."""
    for secret in (
        settings.kafka_password,
        settings.database_password,
        settings.migration_database_password,
        settings.redis_password,
        settings.provider_access_key,
        settings.request_signing_key,
    ):
        value = secret.get_secret_value()
        if value:
            text = text.replace(value, "***")
    for key in settings.signing_keys:
        text = text.replace(key.decode(), "***")
    return text


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
