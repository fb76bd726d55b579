"""Preparing the local stack refuses, with a clear message, a shell that acts as another Kafka principal."""

from __future__ import annotations

import pytest

from ces.settings import Settings
from cesdev import cli
from cesdev.stack import secrets
from cesdev.stack.secrets import StackSecrets, other_principal
from cesdev.stack.system import StackError

STACK = StackSecrets(kafka={user: "pw" for user in secrets.KAFKA_USERS}, postgres={}, redis={})


@pytest.mark.parametrize(
    ("username", "expected"),
    [("", None), (secrets.KAFKA_ADMIN, None), (secrets.KAFKA_PRODUCER, secrets.KAFKA_PRODUCER), ("alice", "alice")],
)
def test_other_principal_names_whoever_is_not_the_role(username: str, expected: str | None) -> None:
    assert other_principal(Settings(kafka_username=username), "admin", STACK) == expected


def test_no_stack_means_no_opinion() -> None:
    """docker-compose's kafka-setup and external clusters bring their own admin."""
    settings = Settings(kafka_username="anyone", stack_dir="/nonexistent-ces-stack")
    assert other_principal(settings, "admin") is None


def test_prepare_stops_before_touching_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "load", lambda settings: STACK)
    with pytest.raises(StackError, match=r"principal 'ces-producer'.*unset CES_KAFKA_USERNAME CES_KAFKA_PASSWORD"):
        cli._prepare(Settings(kafka_username=secrets.KAFKA_PRODUCER))
