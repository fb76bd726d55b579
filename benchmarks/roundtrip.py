"""Benchmark: where one conversion round trip's time goes, measured against a running CES worker.

Does what the gateway does (publish a `ConversionRequested`, wait for its result on the result topics)
from a closed loop of `--concurrency` clients, and splits each round trip with timestamps:

    produce    send() -> the broker's acknowledgement (acks=all), on this client's clock
    worker     the request record's timestamp -> the result record's timestamp (both set by the producers'
               send(), so: the worker's fetch, parse, rate lookup, PostgreSQL commit, until it publishes)
    reply      the result record's timestamp -> this client read it (the worker's linger and acks, the
               broker, this reader's fetch)

and the worker's own stage histograms (`ces_conversion_stage_seconds`, scraped from its /metrics before
and after) split "worker" further into fetch wait, parse, decide, record (commit) and publish. Record
timestamps are milliseconds; all processes share this machine's clock.

    CES_TOPIC_PREFIX=... python benchmarks/roundtrip.py [--concurrency 8] [--requests 2000]
        [--worker-metrics http://127.0.0.1:6066/metrics]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
import uuid
from decimal import Decimal

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from ces.adapters.kafka.connection import kafka_kwargs
from ces.bootstrap import build_producer
from ces.events.conversions import ConversionRequested
from ces.events.topics import CONVERSION_REQUESTS, CONVERSIONS_AUDITED, CONVERSIONS_REJECTED
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

STAGE = re.compile(r'^ces_conversion_stage_seconds_(sum|count)\{stage="(\w+)"\} ([0-9.e+-]+)$', re.M)
BATCH = re.compile(r"^ces_conversion_batch_size_(sum|count) ([0-9.e+-]+)$", re.M)


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    found = {f"{stage}_{kind}": float(value) for kind, stage, value in STAGE.findall(text)}
    found.update({f"batch_{kind}": float(value) for kind, value in BATCH.findall(text)})
    return found


async def main() -> None:
    export_role_env("admin")  # the local stack's credentials, unless CES_* are set
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--worker-metrics", default=None, help="default: the worker's port from settings")
    args = parser.parse_args()
    settings = Settings()
    prefix = settings.topic_prefix
    metrics_url = args.worker_metrics or f"http://127.0.0.1:{settings.worker_web_port}/metrics"

    producer = build_producer(settings, linger_ms=settings.gateway_linger_ms)
    await producer.start()
    consumer = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=None)
    await consumer.start()
    partitions = [
        TopicPartition(prefix + spec.name, p)
        for spec in (CONVERSIONS_AUDITED, CONVERSIONS_REJECTED)
        for p in sorted(await producer.partitions_for(prefix + spec.name))
    ]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    waiters: dict[bytes, asyncio.Future[tuple[int, float]]] = {}

    async def read() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time()
                for record in records:
                    fut = waiters.pop(record.key, None) if record.key is not None else None
                    if fut is not None and not fut.done():
                        fut.set_result((record.timestamp, now))

    reader = asyncio.create_task(read())
    rows: list[tuple[float, float, float, float]] = []  # produce, worker, reply, total (ms)
    counter = iter(range(args.requests))

    async def client() -> None:
        loop = asyncio.get_running_loop()
        for _ in counter:
            event = ConversionRequested(
                request_id=uuid.uuid4(), base_currency="EUR", target_currency="USD", amount=Decimal("100.00")
            )
            fut: asyncio.Future[tuple[int, float]] = loop.create_future()
            waiters[event.key()] = fut
            sent = time.time()
            metadata = await (await producer.send(prefix + CONVERSION_REQUESTS.name, event.to_json(), key=event.key()))
            acked = time.time()
            result_ts, received = await asyncio.wait_for(fut, 10)
            rows.append(
                (
                    (acked - sent) * 1000,
                    result_ts - metadata.timestamp,
                    received * 1000 - result_ts,
                    (received - sent) * 1000,
                )
            )

    try:
        await asyncio.gather(*(client() for _ in range(min(4, args.concurrency))))  # warm-up
        rows.clear()
        counter = iter(range(args.requests))
        before = await scrape(metrics_url)
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        wall = time.perf_counter() - started
        after = await scrape(metrics_url)
    finally:
        reader.cancel()
        await consumer.stop()
        await producer.stop()

    def col(i: int) -> tuple[float, float]:
        values = [r[i] for r in rows]
        return statistics.median(values), statistics.fmean(values)

    print(f"c={args.concurrency}: {len(rows) / wall:.0f} round trips/s over {len(rows)}")
    for i, name in enumerate(("produce (ack)", "request ts -> result ts", "result ts -> read", "total")):
        p50, mean = col(i)
        print(f"  {name:<26} p50 {p50:6.1f} ms  mean {mean:6.1f} ms")
    batches = after.get("batch_count", 0) - before.get("batch_count", 0)
    if batches:
        size = (after["batch_sum"] - before["batch_sum"]) / batches
        print(f"  worker: {batches:.0f} batches, {size:.1f} requests per batch; per batch, mean:")
        for stage in ("parse", "decide", "record", "publish"):
            total = after.get(f"{stage}_sum", 0) - before.get(f"{stage}_sum", 0)
            print(f"    {stage:<8} {total / batches * 1000:6.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
