"""How every Kafka client of CES reaches and authenticates to the brokers: one place, from settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ces.settings import Settings


@dataclass(frozen=True)
class KafkaConnection:
    """Bootstrap servers and credentials; `kwargs()` is what any aiokafka client takes.

    Every producer, consumer and admin client CES creates is built with `**connection.kwargs()` (and the
    worker's Faust app with `faust_credentials()`), so a security setting can never be honoured by one
    client and forgotten by another. The password is a SecretStr: the dataclass's repr masks it.
    """

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: SecretStr = field(default_factory=lambda: SecretStr(""))
    ssl_cafile: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConnection:
        return cls(
            bootstrap=settings.kafka_bootstrap,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_username,
            password=settings.kafka_password,
            ssl_cafile=settings.kafka_ssl_cafile,
        )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in {"SSL", "SASL_SSL"}

    def kwargs(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.uses_sasl:
            result |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value(),
            }
        if self.uses_tls:
            from aiokafka.helpers import create_ssl_context

            result["ssl_context"] = create_ssl_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        return result

    def faust_broker(self) -> list[str]:
        return [f"kafka://{host.strip()}" for host in self.bootstrap.split(",")]

    def faust_credentials(self) -> Any:
        """Faust's `broker_credentials` for the worker's app (None when the listener is plaintext)."""
        import faust

        ssl_context = self.kwargs().get("ssl_context")
        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.username,
                password=self.password.get_secret_value(),
                mechanism=self.sasl_mechanism,
                ssl_context=ssl_context,
            )
        if self.uses_tls:
            return faust.SSLCredentials(ssl_context)
        return None


def kafka_kwargs(target: str | Settings) -> dict[str, Any]:
    """aiokafka kwargs for `target` (settings, or a bootstrap address taking the credentials of `CES_KAFKA_*`):
    for tools, tests and benchmarks that pass a bootstrap address around."""
    if isinstance(target, Settings):
        return KafkaConnection.from_settings(target).kwargs()
    return KafkaConnection.from_settings(Settings(kafka_bootstrap=target)).kwargs()
