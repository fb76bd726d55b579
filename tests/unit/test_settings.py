"""Settings come from CES_* environment variables, with the local stack as defaults."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from ces.settings import Settings, mask_secrets


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CES_KAFKA_BOOTSTRAP", "CES_DATABASE_URL", "CES_MIGRATION_DATABASE_URL", "CES_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CES_STACK_DIR", raising=False)
    monkeypatch.delenv("CES_KAFKA_SECURITY_PROTOCOL", raising=False)
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.database_url == "postgresql+psycopg2://ces_app@127.0.0.1:15432/ces"
    assert settings.migration_database_url == "postgresql+psycopg2://ces_owner@127.0.0.1:15432/ces"
    assert settings.redis_url == "redis://ces@127.0.0.1:16379/0"
    assert settings.stack_dir == Path(".stack")


def test_passwords_are_secrets_even_when_written_inside_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE", "MIGRATION_DATABASE", "REDIS", "KAFKA"):
        monkeypatch.delenv(f"CES_{name}_PASSWORD", raising=False)
    settings = Settings(
        database_url="postgresql+psycopg2://ces_app:s3cr%40t@db:5432/ces?sslmode=require",
        redis_url="redis://ces:r3dis@cache:6379/0",
        kafka_password="k4fka",
    )
    # The URL fields never carry the password; the DSNs (for drivers only) do, decoded and re-encoded.
    assert settings.database_url == "postgresql+psycopg2://ces_app@db:5432/ces?sslmode=require"
    assert settings.database_password.get_secret_value() == "s3cr@t"
    assert settings.database_dsn == "postgresql+psycopg2://ces_app:s3cr%40t@db:5432/ces?sslmode=require"
    assert settings.redis_dsn == "redis://ces:r3dis@cache:6379/0"
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        for secret in ("s3cr@t", "s3cr%40t", "r3dis", "k4fka"):
            assert secret not in text
    assert mask_secrets("could not connect to ces_app:s3cr@t and k4fka", settings) == (
        "could not connect to ces_app:*** and ***"
    )


def test_kafka_clients_get_the_credentials_from_one_place() -> None:
    from ces.adapters.kafka.connection import KafkaConnection

    settings = Settings(kafka_username="ces-worker", kafka_password="pw", kafka_bootstrap="k:9092")
    connection = KafkaConnection.from_settings(settings)
    assert connection.kwargs() == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ces-worker",
        "sasl_plain_password": "pw",
    }
    assert "pw" not in repr(connection)
    credentials = connection.faust_credentials()
    assert credentials.username == "ces-worker" and credentials.mechanism.value == "SCRAM-SHA-512"
    plain = KafkaConnection.from_settings(Settings(kafka_security_protocol="PLAINTEXT", kafka_bootstrap="k:9092"))
    assert plain.kwargs() == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert plain.faust_credentials() is None


def test_environment_overrides_with_ces_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CES_KAFKA_BOOTSTRAP", "kafka.example:19092")
    monkeypatch.setenv("CES_DEFAULT_MARGIN", "0.0125")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "ignored:1")
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka.example:19092"
    assert settings.default_margin == Decimal("0.0125")


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CES_FETCH_INTERVAL_SECONDS", "0")
    with pytest.raises(ValidationError):
        Settings()
