"""The fault suite's machinery: a private stack, CES processes, an outside load producer and an independent oracle.

Nothing here imports CES's consumers, decoders or stores to judge CES: the oracle reads the topics with a
plain aiokafka consumer and PostgreSQL with plain SQL, and decides what "accounted for" means by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import Engine, create_engine, text

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.postgres import migrate
from ces.settings import Settings
from cesdev.stack import acls, secrets
from cesdev.stack.kafka import Kafka
from cesdev.stack.postgres import Postgres
from cesdev.stack.redis import Redis
from tests.e2e.conftest import RunningProcess, free_port, in_schema, poll
from tests.support import cli, drop_schema

# The shared stack of every engineer and of the other suites: the fault suite must never reach it.
SHARED_PORTS = {9092, 9093, 15432, 16379}
PARTITIONS = 4
REQUESTS = "conversion-requests"
AUDITED = "conversions-audited"
REJECTED = "conversions-rejected"
DEAD = "ces-dead-letters"
RATES = "rates-fetched"
FETCH_FAILURES = "rate-fetch-failures"


def _port_pair() -> int:
    """A free port whose successor is free too (Kafka's controller listens on port + 1)."""
    for _ in range(50):
        port = free_port()
        if port + 1 > 65535 or port in SHARED_PORTS or port + 1 in SHARED_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def _private_port() -> int:
    port = free_port()
    assert port not in SHARED_PORTS
    return port


class PrivateStack:
    """Kafka, PostgreSQL and Redis of this session only, on free ports, in a temporary directory."""

    def __init__(self) -> None:
        # A private (0700) directory: the stack must work there without widening anybody's permissions.
        self.dir = Path(tempfile.mkdtemp(prefix="ces-faults-"))
        self.kafka_port = _port_pair()
        self.pg_port = _private_port()
        self.redis_port = _private_port()
        self.env = {
            "CES_STACK_DIR": str(self.dir),
            "CES_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "CES_DATABASE_URL": f"postgresql+psycopg2://ces_app@127.0.0.1:{self.pg_port}/ces",
            "CES_MIGRATION_DATABASE_URL": f"postgresql+psycopg2://ces_owner@127.0.0.1:{self.pg_port}/ces",
            "CES_REDIS_URL": f"redis://ces@127.0.0.1:{self.redis_port}/0",
        }
        self.settings = Settings(
            stack_dir=self.dir,
            kafka_bootstrap=self.env["CES_KAFKA_BOOTSTRAP"],
            database_url=self.env["CES_DATABASE_URL"],
            migration_database_url=self.env["CES_MIGRATION_DATABASE_URL"],
            redis_url=self.env["CES_REDIS_URL"],
        )
        for port in (self.kafka_port, self.kafka_port + 1, self.pg_port, self.redis_port):
            assert port not in SHARED_PORTS, port

    @property
    def bootstrap(self) -> str:
        return self.env["CES_KAFKA_BOOTSTRAP"]

    def ces(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """`python -m ces <args>` against this stack, waited for."""
        full = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1", **(env or {})}
        return subprocess.run(cli(*args), env=full, capture_output=True, text=True, timeout=timeout)

    def up(self) -> float:
        started = time.monotonic()
        result = self.ces("stack", "up")
        assert result.returncode == 0, result.stdout + result.stderr
        # This stack's own passwords (generated in self.dir), never the shared stack's of the environment.
        self.settings = secrets.for_probe(self.settings, "admin")
        stack = secrets.load(self.settings)
        assert stack is not None
        self.env.update(secrets.role_env(stack, "admin"))
        return time.monotonic() - started

    @property
    def kafka_kwargs(self) -> dict[str, Any]:
        """aiokafka kwargs of this stack's admin (the test's producers and observers)."""
        return KafkaConnection.from_settings(self.settings).kwargs()

    def role_env(self, role: str) -> dict[str, str]:
        stack = secrets.load(self.settings)
        return secrets.role_env(stack, role) if stack is not None else {}

    def down(self) -> None:
        self.ces("stack", "down")

    # The stop side of each outage goes through the service objects built from this stack's settings:
    # they act only on the pid files under self.dir.
    def kafka(self) -> Kafka:
        return Kafka(self.settings)

    def postgres(self) -> Postgres:
        return Postgres(self.settings)

    def redis(self) -> Redis:
        return Redis(self.settings)


@dataclass
class Deployment:
    """One scenario's CES: its own schema, topic prefix, app id and Redis keys on the private stack."""

    stack: PrivateStack
    unique: str
    logs: Path
    schema: str = ""
    env: dict[str, str] = field(default_factory=dict)
    engine: Engine | None = None
    processes: list[RunningProcess] = field(default_factory=list)
    sim_port: int = 0

    def __post_init__(self) -> None:
        self.schema = f"faults_{self.unique}"
        settings = self.stack.settings
        migrate.upgrade(settings.migration_database_dsn, schema=self.schema)
        self.engine = create_engine(in_schema(settings.database_dsn, self.schema), pool_pre_ping=True)
        prefix, app_id = f"faults-{self.unique}-", f"faults-{self.unique}"
        asyncio.run(acls.grant_ces(KafkaConnection.from_settings(settings), prefix=prefix, app_id=app_id))
        self.sim_port = _private_port()
        self.env = {
            **self.stack.env,
            "CES_APP_ID": f"faults-{self.unique}",
            "CES_TOPIC_PREFIX": f"faults-{self.unique}-",
            "CES_REDIS_KEY_PREFIX": f"faults-{self.unique}:",
            "CES_DATABASE_URL": in_schema(settings.database_url, self.schema),
            "CES_MIGRATION_DATABASE_URL": in_schema(settings.migration_database_url, self.schema),
            "CES_PROVIDER_URL": f"http://127.0.0.1:{self.sim_port}",
            "CES_PROVIDER_SIM_PORT": str(self.sim_port),
            "CES_TOPIC_PARTITIONS": str(PARTITIONS),
            "CES_FETCH_INTERVAL_SECONDS": "5",
            "CES_FETCH_MAX_ATTEMPTS": "2",
            "CES_FETCH_BACKOFF_INITIAL_SECONDS": "0.2",
            "CES_FETCH_BACKOFF_MAX_SECONDS": "0.5",
            "CES_FETCH_TIMEOUT_SECONDS": "3",
            "CES_FETCH_MAX_TOTAL_SECONDS": "4",
        }

    def topic(self, name: str) -> str:
        return self.env["CES_TOPIC_PREFIX"] + name

    def start(self, *args: str, name: str) -> RunningProcess:
        log = self.logs / f"{name}-{len(self.processes)}.log"
        env = {**os.environ, **self.env, "CES_WORKER_WEB_PORT": str(_private_port()), "PYTHONUNBUFFERED": "1"}
        if args[0] in ("worker", "gateway"):  # as its own principal, not the admin
            env.update(self.stack.role_env(args[0]))
        with open(log, "wb") as out:
            proc = subprocess.Popen(cli(*args), stdout=out, stderr=subprocess.STDOUT, env=env)
        running = RunningProcess(proc, log)
        self.processes.append(running)
        return running

    def start_worker(self) -> RunningProcess:
        worker = self.start("worker", name="worker")
        worker.wait_for_output("ces worker ready", timeout=120)
        return worker

    def start_provider(self, *extra: str) -> RunningProcess:
        sim = self.start("provider-sim", "--live", "--port", str(self.sim_port), *extra, name="provider-sim")
        poll_until(lambda: _answers(self.sim_port), timeout=30, what="provider-sim listening")
        return sim

    def decided_rows(self) -> int:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT (SELECT count(*) FROM conversion_audit) + (SELECT count(*) FROM conversion_rejection)")
                ).scalar_one()
            )

    def rate_rows(self) -> int:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one())

    def db_decisions(self) -> tuple[list[str], list[str]]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            audited = [str(r) for r in conn.execute(text("SELECT request_id FROM conversion_audit")).scalars()]
            rejected = [str(r) for r in conn.execute(text("SELECT request_id FROM conversion_rejection")).scalars()]
        return audited, rejected

    def replay_verify(self) -> subprocess.CompletedProcess[str]:
        target = f"faults_r_{self.unique}"
        try:
            return self.stack.ces("replay", "--target-schema", target, "--verify", env=self.env, timeout=300)
        finally:
            drop_schema(self.stack.settings.migration_database_dsn, target)

    def reconcile(self, wait: float) -> subprocess.CompletedProcess[str]:
        """`ces reconcile` (CES's own accounting), run as a second opinion next to the test's oracle."""
        return self.stack.ces("reconcile", "--json", "--wait", str(wait), env=self.env, timeout=wait + 120)

    def log_excerpt(self, lines: int = 40) -> str:
        """The tail of every process log, and every error line, for the report."""
        parts = []
        for running in self.processes:
            out = running.output().splitlines()
            errors = [line for line in out if "ERROR" in line or "Traceback" in line or "Error:" in line]
            parts.append(
                f"--- {running.log.name} (exit {running.proc.poll()}), {len(errors)} error lines; first errors:\n"
                + "\n".join(errors[:8])
                + "\n--- tail:\n"
                + "\n".join(out[-lines:])
            )
        return "\n".join(parts)

    def close(self) -> None:
        for running in reversed(self.processes):
            if running.proc.poll() is None:
                running.terminate(timeout=30)
        if self.engine is not None:
            self.engine.dispose()
        with contextlib.suppress(Exception):
            drop_schema(self.stack.settings.migration_database_dsn, self.schema)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def poll_until(check: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2) -> object:
    return poll(check, timeout=timeout, interval=interval, what=what)


def kill9(running: RunningProcess) -> None:
    running.proc.send_signal(signal.SIGKILL)
    running.proc.wait(timeout=30)


# The load: an outside producer, not CES code.

# Expected decision per generated request: the test's own rules, not CES's.
EXPECT_AUDITED = "audited"
EXPECT_REJECTED = "rejected"

_VALID = [("EUR", "USD"), ("USD", "EUR"), ("EUR", "JPY"), ("GBP", "EUR")]
_CROSS = [("USD", "JPY"), ("GBP", "CHF"), ("JPY", "USD"), ("CHF", "GBP")]
_INVALID: list[dict[str, object]] = [
    {"base_currency": "USD", "target_currency": "JPY", "amount": "-5.00"},
    {"base_currency": "USD", "target_currency": "ZZZ", "amount": "1.00"},
    {"base_currency": "USD", "target_currency": "USD", "amount": "1.00"},
    {"base_currency": "JPY", "target_currency": "USD", "amount": "10.5"},
    {"base_currency": "USD", "target_currency": "JPY", "amount": "NaN"},
    {"base_currency": 840, "target_currency": "JPY", "amount": "1.00"},
]


def request_bytes(rid: str, base: object, target: object, amount: object) -> bytes:
    return json.dumps({"request_id": rid, "base_currency": base, "target_currency": target, "amount": amount}).encode()


class Load:
    """Produces conversion requests at a steady rate from a background thread until stopped (and at least
    `minimum` of them): 60% direct or inverse, 25% cross, 10% invalid but decodable, 5% exact duplicates.

    A send that fails (broker down) is retried until it is acknowledged, as an outside producer would.
    """

    def __init__(self, kafka: dict[str, Any], topic: str, *, rate: float, minimum: int, seed: int) -> None:
        self.kafka = kafka
        self.topic = topic
        self.rate = rate
        self.minimum = minimum
        self.rng = random.Random(seed)
        self.expected: dict[str, str] = {}
        self.sent = 0  # messages handed to the producer, duplicates included
        self.acked = 0
        self.send_retries = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="faults-load", daemon=True)
        self._error: BaseException | None = None
        self._recent: list[tuple[str, bytes]] = []

    def start(self) -> Load:
        self._thread.start()
        return self

    def finish(self, timeout: float = 600) -> None:
        """Stop once the minimum has been produced, and wait for every acknowledgement."""
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "load producer did not finish"
        if self._error is not None:
            raise self._error

    def _next(self) -> tuple[str, bytes]:
        roll = self.rng.random()
        if roll < 0.05 and self._recent:
            return self.rng.choice(self._recent)  # the same request id and bytes again
        rid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if roll < 0.65:
            base, target = self.rng.choice(_VALID)
            value = request_bytes(rid, base, target, f"{self.rng.randint(1, 10**6)}.00")
            self.expected[rid] = EXPECT_AUDITED
        elif roll < 0.90:
            base, target = self.rng.choice(_CROSS)
            amount = f"{self.rng.randint(1, 10**6)}" if base == "JPY" else f"{self.rng.randint(1, 10**6)}.00"
            value = request_bytes(rid, base, target, amount)
            self.expected[rid] = EXPECT_AUDITED
        else:
            value = json.dumps({"request_id": rid, **self.rng.choice(_INVALID)}).encode()
            self.expected[rid] = EXPECT_REJECTED
        if len(self._recent) < 1000:
            self._recent.append((rid, value))
        else:
            self._recent[self.rng.randrange(1000)] = (rid, value)
        return rid, value

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self._error = exc

    async def _run(self) -> None:
        producer = AIOKafkaProducer(**self.kafka, linger_ms=5, acks="all", request_timeout_ms=10_000)
        await producer.start()
        pending: set[asyncio.Task[None]] = set()
        try:
            tick = 0.05
            started = time.monotonic()
            while not (self._stop.is_set() and self.sent >= self.minimum):
                due = int((time.monotonic() - started) * self.rate) - self.sent
                for _ in range(max(0, due)):
                    rid, value = self._next()
                    task = asyncio.create_task(self._deliver(producer, rid, value))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    self.sent += 1
                await asyncio.sleep(tick)
            if pending:
                await asyncio.gather(*pending)
        finally:
            await producer.stop()

    async def _deliver(self, producer: AIOKafkaProducer, rid: str, value: bytes) -> None:
        deadline = time.monotonic() + 300
        while True:
            try:
                await asyncio.wait_for(producer.send_and_wait(self.topic, value, key=rid.encode()), timeout=15)
                self.acked += 1
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.failed.append(rid)
                    return
                self.send_retries += 1
                await asyncio.sleep(0.5)


# The oracle: what the topics say, read independently.


@dataclass
class Seen:
    request_ids: dict[tuple[int, int], str | None] = field(default_factory=dict)  # (p, o) -> key text
    decisions: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    decided_at_ms: list[int] = field(default_factory=list)  # record timestamps of decision events
    dead: dict[tuple[str, int, int], str] = field(default_factory=dict)  # (source topic, p, o) -> reason
    rates_at_ms: list[int] = field(default_factory=list)
    fetch_failures_at_ms: list[int] = field(default_factory=list)


def _decision_signature(event: dict[str, Any]) -> tuple[str, str]:
    """What must never differ between two results for one request id."""
    if event.get("event_type") == "ConversionAudited":
        return "audited", f"{event.get('output_amount')}|{event.get('rate_ids')}|{event.get('audit_id')}"
    return "rejected", f"{event.get('reason')}"


class Observer:
    """A plain aiokafka consumer (no group, no CES code) tailing every topic of a deployment in a thread."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.seen = Seen()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="faults-observer", daemon=True)

    def start(self) -> Observer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        d = self.deployment
        topics = [d.topic(t) for t in (REQUESTS, AUDITED, REJECTED, DEAD, RATES, FETCH_FAILURES)]
        consumer = AIOKafkaConsumer(
            *topics,
            **d.stack.kafka_kwargs,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            metadata_max_age_ms=2000,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                with self.lock:
                    for tp, records in batches.items():
                        for r in records:
                            self._note(tp, r)
        finally:
            await consumer.stop()

    def _note(self, tp: TopicPartition, r: Any) -> None:
        d, seen = self.deployment, self.seen
        if tp.topic == d.topic(REQUESTS):
            seen.request_ids[(tp.partition, r.offset)] = r.key.decode("utf-8", "replace") if r.key else None
        elif tp.topic in (d.topic(AUDITED), d.topic(REJECTED)):
            event = json.loads(r.value)
            seen.decisions[str(event["request_id"])].append(_decision_signature(event))
            seen.decided_at_ms.append(r.timestamp)
        elif tp.topic == d.topic(DEAD):
            h = {k: v.decode() for k, v in r.headers}
            key = (h["ces.dlq.source.topic"], int(h["ces.dlq.source.partition"]), int(h["ces.dlq.source.offset"]))
            seen.dead[key] = h.get("ces.dlq.reason", "")
        elif tp.topic == d.topic(RATES):
            seen.rates_at_ms.append(r.timestamp)
        elif tp.topic == d.topic(FETCH_FAILURES):
            seen.fetch_failures_at_ms.append(r.timestamp)

    def decisions_since(self, epoch_ms: int) -> int:
        with self.lock:
            return sum(1 for t in self.seen.decided_at_ms if t >= epoch_ms)

    def decided(self, rid: str) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.seen.decisions.get(rid, []))

    def dead_lettered(self, topic: str, partition: int, offset: int) -> str | None:
        with self.lock:
            return self.seen.dead.get((topic, partition, offset))


@dataclass
class Poison:
    """A message the test sent that is not a plain load request: where it landed and what must become of it."""

    name: str
    topic: str
    partition: int
    offset: int
    request_id: str | None  # set when a decision (not a dead letter) is acceptable
    must: str = "accounted"  # "accounted" (decided or dead-lettered), "dead", or "rejected:<reason>"


@dataclass
class Account:
    produced: int = 0
    audited: int = 0
    rejected: int = 0
    dead: int = 0
    lost: int = 0
    twice: int = 0
    wrong: int = 0  # decided, but not as the test's own rules say
    rates_dead: int = 0  # RateFetched events dead-lettered that the test did not poison
    lost_examples: list[str] = field(default_factory=list)
    wrong_examples: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.lost == 0


def account(observer: Observer, load: Load, poisons: list[Poison]) -> Account:
    """produced = audited + rejected + dead-lettered, by distinct request id (decodable) and by
    (partition, offset) (dead letters), computed from what the observer read."""
    d = observer.deployment
    acc = Account()
    with observer.lock:
        seen_keys = dict(observer.seen.request_ids)
        decisions = {k: list(v) for k, v in observer.seen.decisions.items()}
        dead = dict(observer.seen.dead)
    by_rid: dict[str, list[tuple[int, int]]] = defaultdict(list)
    poison_at = {(p.topic, p.partition, p.offset): p for p in poisons}
    for (partition, offset), key in seen_keys.items():
        if (d.topic(REQUESTS), partition, offset) in poison_at:
            continue
        if key is not None and key in load.expected:
            by_rid[key].append((partition, offset))
    # Every acknowledged load request must also have been read back.
    for rid in load.expected:
        by_rid.setdefault(rid, [])
    for rid, places in by_rid.items():
        acc.produced += 1
        kinds = {kind for kind, _ in decisions.get(rid, [])}
        if len(set(decisions.get(rid, []))) > 1:
            acc.twice += 1
        if "audited" in kinds:
            acc.audited += 1
        elif "rejected" in kinds:
            acc.rejected += 1
        elif places and all((d.topic(REQUESTS), p, o) in dead for p, o in places):
            acc.dead += 1
        else:
            acc.lost += 1
            if len(acc.lost_examples) < 5:
                acc.lost_examples.append(f"{rid} at {places}")
            continue
        if kinds and load.expected[rid] not in kinds:
            acc.wrong += 1
            if len(acc.wrong_examples) < 5:
                acc.wrong_examples.append(f"{rid}: expected {load.expected[rid]}, got {decisions.get(rid)}")
    acc.rates_dead = sum(1 for (topic, p, o) in dead if topic == d.topic(RATES) and (topic, p, o) not in poison_at)
    for poison in poisons:
        acc.produced += 1
        reason = dead.get((poison.topic, poison.partition, poison.offset))
        got = decisions.get(poison.request_id or "", [])
        if poison.must.startswith("rejected:"):
            ok = any(kind == "rejected" and sig == poison.must.split(":", 1)[1] for kind, sig in got)
        elif poison.must == "dead":
            ok = reason is not None
        else:
            ok = reason is not None or bool(got)
        if reason is not None:
            acc.dead += 1
        elif got:
            acc.audited += any(k == "audited" for k, _ in got)
            acc.rejected += all(k != "audited" for k, _ in got)
            acc.twice += len(set(got)) > 1
        if not ok:
            if reason is None and not got:
                acc.lost += 1
                acc.lost_examples.append(f"poison {poison.name} at {poison.partition}@{poison.offset}")
            else:
                acc.wrong += 1
                acc.wrong_examples.append(f"poison {poison.name}: must {poison.must}, got dlq={reason} decisions={got}")
    return acc


# The results table, printed at the end of the session for the report.


@dataclass
class Result:
    scenario: str
    account: Account | None = None
    recovery_s: list[float] = field(default_factory=list)
    db_match: bool | None = None
    replay_exit: int | None = None
    reconcile_exit: int | None = None
    notes: list[str] = field(default_factory=list)

    def row(self) -> str:
        a = self.account or Account()
        rec = ", ".join(f"{r:.1f}" for r in self.recovery_s) or "-"
        db = {None: "-", True: "yes", False: "NO"}[self.db_match]
        replay = "-" if self.replay_exit is None else str(self.replay_exit)
        recon = "-" if self.reconcile_exit is None else str(self.reconcile_exit)
        return (
            f"{self.scenario:<22} {a.produced:>8} {a.audited:>8} {a.rejected:>8} {a.dead:>6} {a.lost:>6} "
            f"{a.twice:>6} {a.wrong:>6} {a.rates_dead:>6} {db:>5} {replay:>6} {recon:>5}  {rec}"
        )


HEADER = (
    f"{'scenario':<22} {'produced':>8} {'audited':>8} {'rejected':>8} {'dead':>6} {'lost':>6} "
    f"{'twice':>6} {'wrong':>6} {'rateDL':>6} {'db=ev':>5} {'replay':>6} {'recon':>5}  recover (s)"
)
RESULTS: list[Result] = []


def table() -> str:
    lines = [HEADER, "-" * len(HEADER), *(r.row() for r in RESULTS)]
    for r in RESULTS:
        lines.extend(f"  {r.scenario}: {note}" for note in r.notes)
    return "\n".join(lines)


def counter_text(c: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(c.items()))


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    yield lambda: time.monotonic() - started
