"""The local Kafka: a single-node KRaft broker on the JVM, resolved from Maven Central."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from ces.settings import Settings
from cesdev.stack import process, system
from cesdev.stack.services import Endpoint, wait_until
from cesdev.stack.system import StackError


class Kafka:
    """A single-node KRaft broker+controller on the JVM, from Maven Central artifacts."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.stack_dir.resolve() / "kafka"
        self.logs = settings.stack_dir.resolve() / "logs"
        first = settings.kafka_bootstrap.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        self._endpoint = Endpoint(host or "127.0.0.1", int(port))

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

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

    def _config(self) -> Path:
        port = self.endpoint.port
        data = self.root / "data"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{port + 1}",
            "listeners": f"PLAINTEXT://{self.endpoint.host}:{port},CONTROLLER://127.0.0.1:{port + 1}",
            "advertised.listeners": f"PLAINTEXT://{self.endpoint.host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Dev settings: consumer groups form at once instead of after 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # Topics CES relies on are created explicitly with their retention (ces.events.topics).
            "auto.create.topics.enable": "true",
            "log.retention.hours": "-1",
        }
        cfg = self.root / "server.properties"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
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
        cfg = self._config()
        if not (self.root / "data" / "meta.properties").exists():
            cluster_id = _kafka_cluster_id()
            system.run(
                self._java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(cfg)),
                what="formatting Kafka's storage",
            )
        process.spawn(
            self._java_cmd("kafka.Kafka", str(cfg)),
            pid_file=self.pid_file(),
            log_file=self.logs / "kafka.out",
        )
        wait_until(self.answers, timeout=90, what="Kafka", log=self.logs / "kafka-server.log")

    def answers(self) -> bool:
        if not self.endpoint.accepts_connections():
            return False
        return asyncio.run(_kafka_metadata(self.settings.kafka_bootstrap))

    def stop(self) -> bool:
        return process.stop(self.pid_file(), timeout=60)


def _kafka_cluster_id() -> str:
    # KRaft wants a base64url-encoded 16-byte id (what kafka-storage random-uuid prints).
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


async def _kafka_metadata(bootstrap: str) -> bool:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=5)
        return True
    except Exception:
        return False
    finally:
        await client.close()
