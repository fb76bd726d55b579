"""The stack manager's rules, with fake services: start what is missing, leave the rest alone."""

from __future__ import annotations

import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ces.settings import Settings
from cesdev.stack import manager, process, secrets
from cesdev.stack.kafka import Kafka
from cesdev.stack.services import Endpoint
from cesdev.stack.system import StackError


def test_spawned_process_is_recorded_and_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "sleeper.pid"
    pid = process.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        pid_file=pid_file,
        log_file=tmp_path / "logs" / "sleeper.log",
    )
    assert process.running_pid(pid_file) == pid
    assert process.stop(pid_file, timeout=10) is True
    assert not process.is_alive(pid)
    assert not pid_file.exists()
    assert process.stop(pid_file) is False  # a second stop has nothing to do


@dataclass
class FakeService:
    name: str
    endpoint: Endpoint
    pid_path: Path
    running: bool = False
    external: bool = False
    calls: list[str] = field(default_factory=list)

    def pid_file(self) -> Path:
        return self.pid_path

    def start(self) -> None:
        self.calls.append("start")
        self.running = True
        self.pid_path.write_text(f"{process.os.getpid()}\n")

    def answers(self) -> bool:
        return self.running or self.external

    def stop(self) -> bool:
        self.calls.append("stop")
        ours = self.pid_path.exists()
        self.pid_path.unlink(missing_ok=True)
        self.running = False
        return ours


def _fakes(tmp_path: Path) -> list[FakeService]:
    return [
        FakeService("missing", Endpoint("127.0.0.1", 1), tmp_path / "missing.pid"),
        FakeService("external", Endpoint("127.0.0.1", 2), tmp_path / "external.pid", external=True),
    ]


def test_up_starts_missing_and_leaves_existing_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = _fakes(tmp_path)
    monkeypatch.setattr(manager, "all_services", lambda settings: fakes)
    statuses = {s.name: s for s in manager.up(Settings())}
    assert fakes[0].calls == ["start"]
    assert fakes[1].calls == []
    assert statuses["missing"].managed and not statuses["external"].managed

    again = {s.name: s for s in manager.up(Settings())}
    assert fakes[0].calls == ["start"]  # idempotent: nothing started twice
    assert again["missing"].detail == "already running"

    stopped = {s.name: s for s in manager.down(Settings())}
    assert stopped["missing"].managed and not stopped["external"].managed
    assert fakes[1].external  # still answering: down never touches what up did not start


def test_up_refuses_to_start_services_off_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = FakeService("remote", Endpoint("kafka.example.invalid", 9092), tmp_path / "remote.pid")
    monkeypatch.setattr(manager, "all_services", lambda settings: [remote])
    with pytest.raises(StackError, match="not on this machine"):
        manager.up(Settings())
    assert remote.calls == []


def test_kafka_config_derives_listeners_from_the_bootstrap_address(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:29092", stack_dir=tmp_path)
    kafka = Kafka(settings)
    path = kafka._config(secrets.load_or_create(settings))
    config = path.read_text().splitlines()
    assert "listeners=CLIENT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093" in config
    assert "process.roles=broker,controller" in config
    assert f"log.dirs={tmp_path.resolve() / 'kafka' / 'data'}" in config


def test_kafka_authenticates_and_authorises_every_client(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:29092", stack_dir=tmp_path)
    config = dict(
        line.split("=", 1)
        for line in Kafka(settings)._config(secrets.load_or_create(settings)).read_text().splitlines()
    )
    assert config["listener.security.protocol.map"] == "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT"
    assert config["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert config["super.users"] == "User:admin"
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert config["listeners"].endswith("CONTROLLER://127.0.0.1:29093")  # the controller stays on loopback
    # It holds the admin password: only its owner may read it; so are the stack's secrets.
    assert stat.S_IMODE((tmp_path / "kafka" / "server.properties").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    for path in (tmp_path / "secrets").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_the_optional_tls_listener_is_sasl_ssl_with_a_certificate_from_the_stacks_ca(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    settings = Settings(kafka_bootstrap="127.0.0.1:29092", stack_dir=tmp_path)
    kafka = Kafka(settings, tls_port=29094)
    config = dict(
        line.split("=", 1) for line in kafka._config(secrets.load_or_create(settings)).read_text().splitlines()
    )
    assert config["listener.security.protocol.map"] == "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT,TLS:SASL_SSL"
    assert config["listener.name.tls.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["inter.broker.listener.name"] == "CLIENT"
    keystore = Path(config["listener.name.tls.ssl.keystore.location"])
    assert config["listener.name.tls.ssl.keystore.type"] == "PEM" and keystore.is_relative_to(kafka.tls_dir)
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600 and stat.S_IMODE(kafka.tls_dir.stat().st_mode) == 0o700
    broker_cert = str(kafka.tls_dir / "broker.crt")
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(kafka.ca_file), "-verify_ip", "127.0.0.1", broker_cert],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    first = keystore.read_text()
    kafka._config(secrets.load_or_create(settings))
    assert keystore.read_text() == first  # made once, not at every start


def test_stack_secrets_are_generated_once_and_differ_per_principal(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path)
    first = secrets.load_or_create(settings)
    assert secrets.load_or_create(settings) == first
    passwords = [*first.kafka.values(), *first.postgres.values(), *first.redis.values()]
    assert len(set(passwords)) == len(passwords) and all(len(p) >= 32 for p in passwords)
    worker = secrets.role_env(first, "worker")
    assert worker["CES_KAFKA_USERNAME"] == "ces-worker"
    assert "CES_MIGRATION_DATABASE_PASSWORD" not in worker  # the owner's password is the admin's alone
    assert "CES_DATABASE_PASSWORD" not in secrets.role_env(first, "producer")


def test_redis_acl_gives_the_application_user_only_its_commands(tmp_path: Path) -> None:
    from cesdev.stack.redis import acl_file_text

    stack = secrets.load_or_create(Settings(stack_dir=tmp_path))
    lines = acl_file_text(stack, "ces:").splitlines()
    app = next(line for line in lines if line.startswith("user ces "))
    assert " ~ces:* " in app and "-@all" in app and "+evalsha" in app
    assert "+flushall" not in app and "+config" not in app and "+@all" not in app
    assert stack.redis["ces"] not in "\n".join(lines)  # hashed, never in clear


def test_a_kafka_cluster_id_is_never_read_as_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from cesdev.stack import kafka

    # 0xf8 encodes to a leading "-" in base64url: the first id drawn would be refused by kafka-storage.
    ids = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(int=1)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(ids))
    cluster_id = kafka._kafka_cluster_id()
    assert not cluster_id.startswith("-") and len(cluster_id) == 22
