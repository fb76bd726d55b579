"""Benchmark: `ces reconcile` over N requests and N decisions (default 100,000 each), start to exit.

On an isolated topic prefix it creates the CES topics (`--partitions`), publishes `--requests` conversion
requests (one in 1,000 a poison message, dead-lettered like the handler does) and one decision per
well-formed request (a realistic `ConversionAudited` body, ~560 bytes; one in ten a rejection), then times
`python -m ces reconcile --json` as a subprocess and prints its wall time, the process's CPU time and peak
RSS, and the messages read per second. Cleans up its topics unless `--keep`.

    python benchmarks/reconcile.py [--requests 100000] [--partitions 4] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection, kafka_kwargs
from ces.events import topics
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

AUDITED = (
    '{{"event_id":"{e}","event_type":"ConversionAudited","schema_version":1,"occurred_at":"2026-11-25T12:00:00Z",'
    '"audit_id":"{a}","request_id":"{r}","rate_id":"{a}","rate_ids":["{a}","{e}"],"rate_kind":"cross",'
    '"base_currency":"USD","target_currency":"JPY","input_amount":"100.00","rate_value":"156.2300000000000",'
    '"margin":"0.01","output_amount":"15467","converted_at":"2026-11-25T12:00:00.123456Z"}}'
)
REJECTED = (
    '{{"event_id":"{e}","event_type":"ConversionRejected","schema_version":1,"occurred_at":"2026-11-25T12:00:00Z",'
    '"request_id":"{r}","reason":"no_rate","message":"no rate for USD/XXX","rejected_at":"2026-11-25T12:00:00Z"}}'
)


async def fill(settings: Settings, prefix: str, n: int, partitions: int) -> None:
    producer = AIOKafkaProducer(**kafka_kwargs(settings.kafka_bootstrap), linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        pending: list[asyncio.Future[object]] = []
        for i in range(n):
            p = i % partitions
            rid = uuid.uuid4()
            if i % 1000 == 999:
                fut = await producer.send(prefix + topics.CONVERSION_REQUESTS.name, b"\xffpoison", partition=p)
                pending.append(fut)
                meta = await fut
                headers = [
                    ("ces.dlq.reason", b"invalid_json"),
                    ("ces.dlq.source.topic", (prefix + topics.CONVERSION_REQUESTS.name).encode()),
                    ("ces.dlq.source.partition", str(p).encode()),
                    ("ces.dlq.source.offset", str(meta.offset).encode()),
                ]
                pending.append(
                    await producer.send(prefix + topics.DEAD_LETTERS.name, b"\xffpoison", partition=0, headers=headers)
                )
                continue
            body = json.dumps(
                {"request_id": str(rid), "base_currency": "USD", "target_currency": "JPY", "amount": "100.00"}
            ).encode()
            key = str(rid).encode()
            pending.append(await producer.send(prefix + topics.CONVERSION_REQUESTS.name, body, key=key, partition=p))
            e = uuid.uuid4()
            if i % 10 == 0:
                value, topic = REJECTED.format(e=e, r=rid), topics.CONVERSIONS_REJECTED.name
            else:
                value, topic = AUDITED.format(e=e, a=uuid.uuid4(), r=rid), topics.CONVERSIONS_AUDITED.name
            pending.append(await producer.send(prefix + topic, value.encode(), key=key, partition=p))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def drop(settings: Settings, prefix: str) -> None:
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    try:
        await admin.delete_topics([prefix + spec.name for spec in topics.ALL_TOPICS])
    finally:
        await admin.close()


def main() -> None:
    export_role_env("admin")  # the local stack's credentials, unless CES_* are set
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    settings = Settings()
    prefix = f"bench-reconcile-{uuid.uuid4().hex[:8]}-"
    asyncio.run(ensure_topics(KafkaConnection.from_settings(settings), partitions=args.partitions, prefix=prefix))
    try:
        started = time.monotonic()
        asyncio.run(fill(settings, prefix, args.requests, args.partitions))
        print(f"produced {args.requests:,} requests and their outcomes in {time.monotonic() - started:.1f}s")
        env = {**os.environ, "CES_TOPIC_PREFIX": prefix}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "ces", "reconcile", "--json"], capture_output=True, text=True, env=env, check=False
        )
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            sys.exit(f"reconcile exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        report = json.loads(result.stdout)
        read = report["totals"]["produced"] + report["decisions_read"] + report["totals"]["dead_lettered"]
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"totals: {report['totals']}")
        print(
            f"ces reconcile: {wall:.2f}s start to exit (its own reading and accounting {report['seconds']:.2f}s), "
            f"{read:,} messages, {read / report['seconds']:,.0f} messages/s; CPU {cpu:.2f}s; "
            f"peak RSS {after.ru_maxrss / 1024:.0f} MiB"
        )
    finally:
        if not args.keep:
            asyncio.run(drop(settings, prefix))


if __name__ == "__main__":
    main()
