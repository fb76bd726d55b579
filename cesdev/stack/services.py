"""The three services of the local stack, each able to install, start, probe and stop itself."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from ces.settings import Settings
from cesdev.stack import process, system
from cesdev.stack.system import StackError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK or self.host.startswith("127.")

    def accepts_connections(self, timeout: float = 0.5) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                return True
        except OSError:
            return False


@dataclass(frozen=True)
class Status:
    name: str
    address: str
    managed: bool
    answers: bool
    detail: str = ""


class Service(Protocol):
    name: str

    @property
    def endpoint(self) -> Endpoint: ...

    def pid_file(self) -> Path: ...

    def start(self) -> None: ...

    def answers(self) -> bool: ...

    def stop(self) -> bool: ...


def wait_until(check: object, *, timeout: float, what: str, log: Path | None = None) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    hint = f"; see {log}" if log else ""
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{hint}")


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


class Postgres:
    """A private PostgreSQL cluster (initdb) with a `ces` role and database."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = make_url(settings.database_url)
        self.root = settings.stack_dir.resolve() / "postgres"
        self.logs = settings.stack_dir.resolve() / "logs"
        self._endpoint = Endpoint(self.url.host or "127.0.0.1", self.url.port or 5432)

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def pid_file(self) -> Path:
        return self.settings.stack_dir.resolve() / "run" / "postgres.pid"

    def _as_owner(self, argv: list[str]) -> list[str]:
        # initdb and postgres refuse to run as root; the Debian package creates `postgres`.
        if system.is_root():
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def start(self) -> None:
        bin_dir = system.ensure_postgres()
        fresh = not (self.data_dir / "PG_VERSION").exists()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        if system.is_root():
            for directory in system.allow_traversal(self.root.parent):
                print(f"  (gave others search permission on {directory} so the postgres user can reach its data)")
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            log_file = self.logs / "postgres.log"
            log_file.touch()
            shutil.chown(log_file, "postgres", "postgres")
        if fresh:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if system.is_root():
                shutil.chown(self.data_dir, "postgres", "postgres")
            system.run(
                self._as_owner(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        "postgres",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                what="initdb",
            )
        options = (
            f"-p {self.endpoint.port} -k {self.socket_dir} "
            f"-c listen_addresses={self.endpoint.host} -c max_connections=200 "
            "-c fsync=on -c shared_buffers=256MB"
        )
        system.run(
            self._as_owner(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.logs / "postgres.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            what=f"starting PostgreSQL (log: {self.logs / 'postgres.log'})",
        )
        pid_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        self.pid_file().parent.mkdir(parents=True, exist_ok=True)
        self.pid_file().write_text(pid_line.strip() + "\n")
        self._ensure_role_and_database(bin_dir)
        wait_until(self.answers, timeout=30, what="PostgreSQL", log=self.logs / "postgres.log")

    def _psql(self, bin_dir: Path, sql: str, db: str = "postgres") -> str:
        out = system.run(
            self._as_owner(
                [
                    str(bin_dir / "psql"),
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(self.endpoint.port),
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-tAc",
                    sql,
                ]
            ),
            what="psql",
        )
        return out.strip()

    def _ensure_role_and_database(self, bin_dir: Path) -> None:
        user = self.url.username or "ces"
        password = self.url.password or "ces"
        database = self.url.database or "ces"
        quoted_pw = str(password).replace("'", "''")
        if self._psql(bin_dir, f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'") != "1":
            self._psql(bin_dir, f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{quoted_pw}' CREATEDB")
        if self._psql(bin_dir, f"SELECT 1 FROM pg_database WHERE datname = '{database}'") != "1":
            self._psql(bin_dir, f'CREATE DATABASE "{database}" OWNER "{user}"')

    def answers(self) -> bool:
        if not self.endpoint.accepts_connections():
            return False
        import psycopg2

        try:
            conn = psycopg2.connect(
                self.url.set(drivername="postgresql").render_as_string(hide_password=False),
                connect_timeout=3,
            )
        except psycopg2.Error:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return bool(cur.fetchone() == (1,))
        finally:
            conn.close()

    def stop(self) -> bool:
        if process.running_pid(self.pid_file()) is None:
            self.pid_file().unlink(missing_ok=True)
            return False
        bin_dir = system.postgres_bin_dir()
        if bin_dir is not None:
            subprocess.run(
                self._as_owner([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
                check=False,
                stdout=subprocess.DEVNULL,
            )
        process.stop(self.pid_file())
        return True


class Redis:
    """A redis-server without persistence: the cache is derived state, rebuilt from PostgreSQL."""

    name = "redis"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        parts = urlsplit(settings.redis_url)
        self._endpoint = Endpoint(parts.hostname or "127.0.0.1", parts.port or 6379)
        self.root = settings.stack_dir.resolve() / "redis"
        self.logs = settings.stack_dir.resolve() / "logs"

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    def pid_file(self) -> Path:
        return self.settings.stack_dir.resolve() / "run" / "redis.pid"

    def start(self) -> None:
        server = system.ensure_redis()
        self.root.mkdir(parents=True, exist_ok=True)
        process.spawn(
            [
                server,
                "--bind",
                self.endpoint.host,
                "--port",
                str(self.endpoint.port),
                "--dir",
                str(self.root),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ],
            pid_file=self.pid_file(),
            log_file=self.logs / "redis.log",
        )
        wait_until(self.answers, timeout=30, what="Redis", log=self.logs / "redis.log")

    def answers(self) -> bool:
        if not self.endpoint.accepts_connections():
            return False
        import redis

        try:
            client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def stop(self) -> bool:
        return process.stop(self.pid_file())


def all_services(settings: Settings) -> list[Service]:
    return [Postgres(settings), Redis(settings), Kafka(settings)]
