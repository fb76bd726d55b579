"""`ces reconcile` against the real Kafka: private prefixed topics filled with a plain producer, read to a
cut with a manual assignment; the numbers, the gap, `--since`, `--wait` and the exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ces.adapters.kafka.connection import KafkaConnection, kafka_kwargs
from ces.adapters.kafka.reader import KafkaReconcileSource, TopicMissing
from ces.events import topics
from ces.services.reconcile import Missing, ReconcileReport, reconcile
from ces.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2


@dataclass
class Deployment:
    """One CES deployment's four topics, private to the test through the prefix."""

    bootstrap: str
    prefix: str

    def name(self, spec: topics.TopicSpec) -> str:
        return self.prefix + spec.name

    @property
    def requests(self) -> str:
        return self.name(topics.CONVERSION_REQUESTS)

    def source(self, since: datetime | None = None) -> KafkaReconcileSource:
        return KafkaReconcileSource(
            KafkaConnection.from_settings(Settings(kafka_bootstrap=self.bootstrap)),
            requests=self.requests,
            audited=self.name(topics.CONVERSIONS_AUDITED),
            rejected=self.name(topics.CONVERSIONS_REJECTED),
            dead_letters=self.name(topics.DEAD_LETTERS),
            since=since,
        )

    async def reconcile(self, since: datetime | None = None) -> ReconcileReport:
        async with self.source(since) as source:
            return await reconcile(source, self.requests, since=since)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CES_TOPIC_PREFIX": self.prefix, "CES_KAFKA_BOOTSTRAP": self.bootstrap}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        return subprocess.run(
            [sys.executable, "-m", "ces", "reconcile", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
            check=False,
        )

    async def acli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(self.cli, *args)

    async def produce(
        self,
        spec: topics.TopicSpec,
        messages: Sequence[tuple[int, bytes | None, bytes]],
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """(partition, key, value) triples, each to the partition given; waits for every acknowledgement."""
        producer = AIOKafkaProducer(**kafka_kwargs(self.bootstrap), linger_ms=5)
        await producer.start()
        try:
            futures = [
                await producer.send(
                    self.name(spec),
                    value,
                    key=key,
                    partition=partition,
                    headers=list(headers) if headers else None,
                    timestamp_ms=timestamp_ms,
                )
                for partition, key, value in messages
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def dead_letter(self, partition: int, offset: int, value: bytes, reason: str = "invalid_json") -> None:
        headers = [
            ("ces.dlq.reason", reason.encode()),
            ("ces.dlq.error", b"detail"),
            ("ces.dlq.source.topic", self.requests.encode()),
            ("ces.dlq.source.partition", str(partition).encode()),
            ("ces.dlq.source.offset", str(offset).encode()),
        ]
        await self.produce(topics.DEAD_LETTERS, [(0, None, value)], headers=headers)


@pytest.fixture
async def deployment(settings: Settings, unique: str) -> AsyncIterator[Deployment]:
    prefix = f"test-rec-{unique}-"
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    names = [prefix + spec.name for spec in topics.ALL_TOPICS]
    try:
        await admin.create_topics([NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names])
        yield Deployment(settings.kafka_bootstrap, prefix)
    finally:
        await admin.delete_topics(names)
        await admin.close()


def req(rid: uuid.UUID) -> bytes:
    body = {"request_id": str(rid), "base_currency": "USD", "target_currency": "EUR", "amount": "1.00"}
    return json.dumps(body).encode()


def decision(rid: uuid.UUID, **body: str) -> tuple[bytes, bytes]:
    return str(rid).encode(), json.dumps({"request_id": str(rid), **body}, sort_keys=True).encode()


async def test_counts_per_partition_and_the_gap_then_none(deployment: Deployment) -> None:
    a, b, c, d, e = (uuid.uuid4() for _ in range(5))
    # Partition 0: a, a again (a retry), b, poison. Partition 1: c, d, e.
    await deployment.produce(
        topics.CONVERSION_REQUESTS,
        [
            (0, None, req(a)),
            (0, None, req(a)),
            (0, None, req(b)),
            (0, None, b"\xffnot json"),
            (1, None, req(c)),
            (1, None, req(d)),
            (1, None, req(e)),
        ],
    )
    await deployment.produce(
        topics.CONVERSIONS_AUDITED,
        [(0, *decision(a, output_amount="0.92")), (0, *decision(a, output_amount="0.92")), (1, *decision(c))],
    )
    await deployment.produce(topics.CONVERSIONS_REJECTED, [(1, *decision(b, reason="no_rate"))])
    await deployment.dead_letter(0, 3, b"\xffnot json")

    report = await deployment.reconcile()

    p0, p1 = report.partitions
    assert (p0.produced, p0.request_ids, p0.audited, p0.rejected, p0.dead_lettered, p0.missing) == (4, 2, 2, 1, 1, 0)
    assert (p1.produced, p1.request_ids, p1.audited, p1.rejected, p1.dead_lettered, p1.missing) == (3, 3, 1, 0, 0, 2)
    assert report.missing == [Missing(1, 1, d), Missing(1, 2, e)]
    assert report.double_decisions == []
    assert not report.ok

    gap = await deployment.acli("--json")
    assert gap.returncode == 1, gap.stderr
    as_json = json.loads(gap.stdout)
    assert as_json["totals"] == {
        "produced": 7,
        "request_ids": 5,
        "audited": 3,
        "rejected": 1,
        "dead_lettered": 1,
        "missing": 2,
    }
    assert [m["request_id"] for m in as_json["missing"]] == [str(d), str(e)]
    table = await deployment.acli("--limit", "1")
    assert table.returncode == 1, table.stderr
    assert str(d) in table.stdout
    assert str(e) not in table.stdout  # --limit 1
    assert "GAP" in table.stdout

    await deployment.produce(topics.CONVERSIONS_REJECTED, [(0, *decision(d, reason="stale_rate"))])
    await deployment.produce(topics.CONVERSIONS_AUDITED, [(1, *decision(e))])
    done = await deployment.acli()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


async def test_wait_sees_outcomes_published_meanwhile(deployment: Deployment) -> None:
    rids = [uuid.uuid4() for _ in range(20)]
    await deployment.produce(topics.CONVERSION_REQUESTS, [(i % PARTITIONS, None, req(r)) for i, r in enumerate(rids)])
    await deployment.produce(topics.CONVERSIONS_AUDITED, [(0, *decision(r)) for r in rids[:10]])
    waiting = asyncio.create_task(deployment.acli("--wait", "60", "--json"))
    # The rest arrives while the CLI reads (or before it starts: either way it must see them).
    await deployment.produce(topics.CONVERSIONS_AUDITED, [(1, *decision(r)) for r in rids[10:]])
    started = time.monotonic()
    result = await waiting
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["totals"]["audited"] == 20
    assert time.monotonic() - started < 60


async def test_wait_runs_out_on_a_real_gap(deployment: Deployment) -> None:
    rid = uuid.uuid4()
    await deployment.produce(topics.CONVERSION_REQUESTS, [(0, None, req(rid))])
    started = time.monotonic()
    result = await deployment.acli("--wait", "2", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["missing"] == [{"partition": 0, "offset": 0, "request_id": str(rid)}]
    assert report["waited_seconds"] >= 2
    assert time.monotonic() - started >= 2


async def test_double_decision_exits_1(deployment: Deployment) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    await deployment.produce(topics.CONVERSION_REQUESTS, [(0, None, req(a)), (1, None, req(b))])
    await deployment.produce(topics.CONVERSIONS_AUDITED, [(0, *decision(a, output_amount="1.00"))])
    await deployment.produce(topics.CONVERSIONS_REJECTED, [(1, *decision(a, reason="no_rate"))])
    await deployment.produce(
        topics.CONVERSIONS_AUDITED,
        [(1, *decision(b, output_amount="2.00")), (0, *decision(b, output_amount="2.00"))],  # identical: fine
    )
    result = await deployment.acli("--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["totals"]["missing"] == 0
    assert report["double_decisions"] == [{"request_id": str(a), "decisions": ["audited", "rejected"]}]


async def test_since_starts_the_requests_at_that_time(deployment: Deployment) -> None:
    old, new = uuid.uuid4(), uuid.uuid4()
    two_hours_ago = int((datetime.now(UTC) - timedelta(hours=2)).timestamp() * 1000)
    await deployment.produce(topics.CONVERSION_REQUESTS, [(0, None, req(old))], timestamp_ms=two_hours_ago)
    await deployment.produce(topics.CONVERSION_REQUESTS, [(0, None, req(new))])
    await deployment.produce(topics.CONVERSIONS_AUDITED, [(0, *decision(new))])

    everything = await deployment.acli("--json")
    assert everything.returncode == 1
    assert json.loads(everything.stdout)["missing"][0]["request_id"] == str(old)

    recent = await deployment.acli("--since", "1h", "--json")
    assert recent.returncode == 0, recent.stdout + recent.stderr
    assert json.loads(recent.stdout)["totals"]["produced"] == 1

    since = datetime.now(UTC) - timedelta(hours=1)
    report = await deployment.reconcile(since=since)
    assert (report.totals.produced, report.totals.audited) == (1, 1)


async def test_missing_topics_are_an_error_and_are_not_created(settings: Settings, unique: str) -> None:
    nowhere = Deployment(settings.kafka_bootstrap, f"test-rec-absent-{unique}-")
    with pytest.raises(TopicMissing):
        await nowhere.reconcile()
    result = await nowhere.acli()
    assert result.returncode == 2
    assert "do not exist" in result.stderr
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    try:
        assert not [t for t in await admin.list_topics() if t.startswith(nowhere.prefix)]
    finally:
        await admin.close()
