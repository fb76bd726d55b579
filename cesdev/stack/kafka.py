"""The local Kafka: a single-node KRaft broker on the JVM, resolved from Maven Central."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from importlib import resources
from pathlib import Path

from ces.adapters.kafka.connection import KafkaConnection
from ces.settings import Settings
from cesdev.stack import acls, process, secrets, system, tls
from cesdev.stack.secrets import KAFKA_ADMIN, KAFKA_USERS, StackSecrets
from cesdev.stack.services import Endpoint, wait_until
from cesdev.stack.system import StackError


class Kafka:
    """A single-node KRaft broker+controller on the JVM, from Maven Central artifacts."""

    name = "kafka"

    def __init__(self, settings: Settings, *, tls_port: int | None = None) -> None:
        self.settings = settings
        # An optional second client listener, SASL_SSL (`CES_STACK_KAFKA_TLS_PORT`, a stack option, not a CES
        # setting): SCRAM over TLS with a certificate from the stack's own CA (`cesdev.stack.tls`).
        env_port = os.environ.get("CES_STACK_KAFKA_TLS_PORT")
        self.tls_port = tls_port if tls_port is not None else (int(env_port) if env_port else None)
        self.root = settings.stack_dir.resolve() / "kafka"
        self.logs = settings.stack_dir.resolve() / "logs"
        first = settings.kafka_bootstrap.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        self._endpoint = Endpoint(host or "127.0.0.1", int(port))

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_file(self) -> Path:
        """What a SASL_SSL client trusts (`CES_KAFKA_SSL_CAFILE`) when the TLS listener is on."""
        return self.tls_dir / "ca.pem"

    def pid_file(self) -> Path:
        return self.settings.stack_dir.resolve() / "run" / "kafka.pid"

    @property
    def lib_dir(self) -> Path:
        return self.root / "lib"

    def _pom(self) -> Path:
        return Path(str(resources.files("cesdev.stack") / "pom.xml"))

    def resolve_artifacts(self) -> None:
        """Copy the broker's jars from Maven Central (cached in ~/.m2 and in lib/, keyed by the pom)."""
        pom = self._pom()
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()
        stamp = self.lib_dir / ".pom-sha256"
        if stamp.exists() and stamp.read_text().strip() == digest:
            return
        mvn = system.ensure_maven()
        if self.lib_dir.exists():
            shutil.rmtree(self.lib_dir)
        print("resolving Kafka from Maven Central ...", flush=True)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={self.lib_dir}"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"Maven could not resolve Kafka:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        stamp.write_text(digest + "\n")

    def _config(self, stack: StackSecrets) -> Path:
        port, host = self.endpoint.port, self.endpoint.host
        listeners = {"CLIENT": (f"{host}:{port}", f"{host}:{port}")}
        if self.tls_port is not None:
            listeners[TLS_LISTENER] = (f"{host}:{self.tls_port}", f"{host}:{self.tls_port}")
        lines = broker_properties(
            listeners=listeners,
            controller=f"127.0.0.1:{port + 1}",
            admin_password=stack.kafka[KAFKA_ADMIN],
            log_dirs=str(self.root / "data"),
        )
        if self.tls_port is not None:
            _, keystore = tls.ensure_broker_pem(self.tls_dir, [host, "localhost"])
            lines["listener.security.protocol.map"] = lines["listener.security.protocol.map"].replace(
                f"{TLS_LISTENER}:SASL_PLAINTEXT", f"{TLS_LISTENER}:SASL_SSL"
            )
            lines[f"listener.name.{TLS_LISTENER.lower()}.ssl.keystore.type"] = "PEM"
            lines[f"listener.name.{TLS_LISTENER.lower()}.ssl.keystore.location"] = str(keystore)
        cfg = self.root / "server.properties"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        # It carries the admin password: readable by this user only.
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in lines.items()))
        os.chmod(cfg, 0o600)
        return cfg

    def _java_cmd(self, main_class: str, *args: str) -> list[str]:
        java = system.ensure_java()
        log4j = Path(str(resources.files("cesdev.stack") / "log4j2.xml"))
        return [
            java,
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs}",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{self.lib_dir}/*",
            main_class,
            *args,
        ]

    def start(self) -> None:
        self.resolve_artifacts()
        stack = secrets.load_or_create(self.settings)
        cfg = self._config(stack)
        data = self.root / "data"
        marker = data / ".ces-scram"
        if (data / "meta.properties").exists() and not marker.exists():
            # Storage formatted before SASL: it has no SCRAM users, so nobody could log in. Keep it aside.
            aside = self.root / f"data.plaintext-{int(time.time())}"
            data.rename(aside)
            print(f"  (Kafka storage from before SASL moved to {aside}; formatting a new one)")
        if not (data / "meta.properties").exists():
            cluster_id = _kafka_cluster_id()
            scram = [
                arg
                for user in KAFKA_USERS
                for arg in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={stack.kafka[user]}]")
            ]
            system.run(
                self._java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(cfg), *scram),
                what="formatting Kafka's storage",
            )
            marker.write_text("SCRAM users added at format time\n")
        process.spawn(
            self._java_cmd("kafka.Kafka", str(cfg)),
            pid_file=self.pid_file(),
            log_file=self.logs / "kafka.out",
        )
        wait_until(self.answers, timeout=90, what="Kafka", log=self.logs / "kafka-server.log")
        asyncio.run(
            acls.grant_ces(self.admin_connection(), prefix=self.settings.topic_prefix, app_id=self.settings.app_id)
        )

    def admin_connection(self) -> KafkaConnection:
        stack = secrets.load(self.settings)
        password = stack.kafka_password(KAFKA_ADMIN) if stack else self.settings.kafka_password
        return KafkaConnection(
            bootstrap=self.settings.kafka_bootstrap,
            security_protocol=self.settings.kafka_security_protocol,
            sasl_mechanism=self.settings.kafka_sasl_mechanism,
            username=KAFKA_ADMIN if stack else self.settings.kafka_username,
            password=password,
        )

    def answers(self) -> bool:
        if not self.endpoint.accepts_connections():
            return False
        return asyncio.run(_kafka_metadata(self.admin_connection()))

    def stop(self) -> bool:
        return process.stop(self.pid_file(), timeout=60)


TLS_LISTENER = "TLS"

# What makes the broker secure, the same wherever it runs (the local stack, docker-compose): every client listener
# is SASL/SCRAM-SHA-512, authorisation is KRaft's StandardAuthorizer denying what no ACL allows, `admin` is the
# only super user. tests/unit/test_compose.py checks the compose broker against these.
SECURITY_PROPERTIES = {
    "sasl.enabled.mechanisms": "SCRAM-SHA-512",
    "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
    "sasl.mechanism.controller.protocol": "PLAIN",
    "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": f"User:{KAFKA_ADMIN}",
    "allow.everyone.if.no.acl.found": "false",
}


def broker_properties(
    *, listeners: dict[str, tuple[str, str]], controller: str, admin_password: str, log_dirs: str
) -> dict[str, str]:
    """A single-node KRaft broker+controller's configuration. `listeners`: name -> (bind, advertised)
    host:port of each client listener (the first is also the inter-broker one); `controller`: the KRaft
    listener's host:port."""
    scram_login = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{KAFKA_ADMIN}" password="{admin_password}";'
    )
    # The controller listener cannot use SCRAM (its credentials live in the metadata the controller serves),
    # so it takes PLAIN with one static user, the broker's own `admin`; it stays on loopback or the private net.
    plain_login = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{KAFKA_ADMIN}" password="{admin_password}" user_{KAFKA_ADMIN}="{admin_password}";'
    )
    names = list(listeners)
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller}",
        "listeners": ",".join([*(f"{n}://{bind}" for n, (bind, _) in listeners.items()), f"CONTROLLER://{controller}"]),
        "advertised.listeners": ",".join(f"{n}://{adv}" for n, (_, adv) in listeners.items()),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": names[0],
        "listener.security.protocol.map": ",".join(f"{n}:SASL_PLAINTEXT" for n in ["CONTROLLER", *names]),
        **SECURITY_PROPERTIES,
    }
    for name in names:
        lines[f"listener.name.{name.lower()}.sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
        lines[f"listener.name.{name.lower()}.scram-sha-512.sasl.jaas.config"] = scram_login
    lines["listener.name.controller.plain.sasl.jaas.config"] = plain_login
    lines.update(
        {
            "log.dirs": log_dirs,
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Dev settings: consumer groups form at once instead of after 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # Topics CES relies on are created explicitly with their retention (ces.events.topics); with ACLs
            # an auto-creation also needs CREATE on the topic, which only admin and the worker (its own) have.
            "auto.create.topics.enable": "true",
            "log.retention.hours": "-1",
        }
    )
    return lines


# docker-compose's broker (scripts/compose/kafka/server.properties, generated by `compose_properties`):
# INTERNAL for the other containers, EXTERNAL for the host; the entrypoint substitutes the admin password.
COMPOSE_PASSWORD_PLACEHOLDER = "@KAFKA_ADMIN_PASSWORD@"


def compose_properties() -> str:
    lines = broker_properties(
        listeners={"INTERNAL": ("0.0.0.0:19092", "kafka:19092"), "EXTERNAL": ("0.0.0.0:9092", "localhost:9092")},
        controller="kafka:9093",
        admin_password=COMPOSE_PASSWORD_PLACEHOLDER,
        log_dirs="/tmp/kafka-data",
    )
    lines["num.partitions"] = "4"
    header = "# Generated by `python -m cesdev.stack.kafka` from cesdev/stack/kafka.py: do not edit.\n"
    return header + "".join(f"{k}={v}\n" for k, v in lines.items())


def _kafka_cluster_id() -> str:
    # KRaft wants a base64url-encoded 16-byte id (what kafka-storage random-uuid prints). Like Kafka's own
    # Uuid.randomUuid, never one that starts with "-": the storage tool's parser reads it as an option (a
    # fresh stack failed to format, 1 time in 64).
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


async def _kafka_metadata(connection: KafkaConnection) -> bool:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(**connection.kwargs(), request_timeout_ms=3000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=5)
        return True
    except Exception:
        return False
    finally:
        await client.close()


if __name__ == "__main__":
    import sys

    target = Path(__file__).resolve().parents[2] / "scripts" / "compose" / "kafka" / "server.properties"
    target.write_text(compose_properties())
    print(f"wrote {target}", file=sys.stderr)
