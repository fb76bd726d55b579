"""Settings come from CES_* environment variables, with the local stack as defaults."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from ces.settings import Settings


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CES_KAFKA_BOOTSTRAP", "CES_DATABASE_URL", "CES_REDIS_URL", "CES_STACK_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.database_url.endswith("@127.0.0.1:15432/ces")
    assert settings.redis_url == "redis://127.0.0.1:16379/0"
    assert settings.stack_dir == Path(".stack")


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
