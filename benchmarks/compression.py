"""Benchmark: Kafka compression of the audit topic (`compression_type` none / gzip / lz4 / zstd on produce).

For each codec, on a fresh topic of an isolated prefix, it produces `--events` realistic `ConversionAudited`
events (random ids, amounts, pairs and times, built once and shared by every codec) with CES's own producer
settings (`ces.bootstrap.build_producer`: idempotent, acks=all, 512 KiB batches, linger 5 ms) plus the codec,
then reads them back as the replay does (manual assignment, `getmany` of 5,000, `decode` of each), and
prints per codec:

- bytes on the broker's disk per event (the local stack's segment files);
- produce: events/s and the producer process's CPU seconds, sent as fast as possible (full batches: the
  best case for compression, as a replay source or a busy worker makes) and, for `--trickle` events,
  one at a time (one event per batch: a quiet worker);
- read and decode: events/s and CPU seconds (what the replay's fetch costs).

lz4 / zstd need `cramjam` (aiokafka's codec library). Needs the stack (`cesdev stack up`); deletes its topics.

    python benchmarks/compression.py [--events 200000] [--trickle 2000] [--codecs none,gzip,lz4,zstd]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ces.adapters.kafka.connection import KafkaConnection, kafka_kwargs
from ces.adapters.kafka.producer import compression_type
from ces.events.base import utc_now
from ces.events.conversions import ConversionAudited
from ces.events.registry import decode
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

CODES = ["USD", "JPY", "GBP", "CHF", "AUD", "CAD", "SEK", "NOK", "PLN", "CZK"]


def realistic(n: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(3)
    rate_ids = {code: uuid.uuid4() for code in CODES}
    start = utc_now()
    out = []
    for i in range(n):
        target = rng.choice(CODES)
        cross = rng.random() < 0.5
        legs = [rate_ids[rng.choice(CODES)], rate_ids[target]] if cross else [rate_ids[target]]
        at = start + timedelta(milliseconds=i * rng.randint(1, 2000))
        event = ConversionAudited(
            event_id=uuid.uuid4(),
            occurred_at=at,
            audit_id=uuid.uuid4(),
            request_id=uuid.uuid4(),
            rate_id=legs[0],
            rate_ids=legs,
            rate_kind="cross" if cross else "direct",
            base_currency="GBP" if cross else "EUR",
            target_currency=target,
            input_amount=Decimal(rng.randint(1, 10**8)).scaleb(-2),
            rate_value=Decimal(rng.randint(10**15, 10**16)).scaleb(-rng.randint(10, 15)),
            margin=Decimal("0.01"),
            output_amount=Decimal(rng.randint(1, 10**10)).scaleb(-2),
            converted_at=at,
        )
        out.append((event.key(), event.to_json()))
    return out


def producer_for(settings: Settings, codec: str) -> AIOKafkaProducer:
    """`ces.bootstrap.build_producer`'s settings (the worker's), plus the codec."""
    return AIOKafkaProducer(
        **KafkaConnection.from_settings(settings).kwargs(),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
        compression_type=compression_type(codec),
    )


async def produce(
    settings: Settings, topic: str, codec: str, bulk: list[tuple[bytes, bytes]], trickle: int
) -> dict[str, float]:
    producer = producer_for(settings, codec)
    await producer.start()
    try:
        cpu, started = time.process_time(), time.monotonic()
        pending = []
        for key, value in bulk:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        bulk_s, bulk_cpu = time.monotonic() - started, time.process_time() - cpu
        cpu, started = time.process_time(), time.monotonic()
        for key, value in bulk[:trickle]:
            await (await producer.send(topic + "-trickle", value, key=key))
        trickle_s, trickle_cpu = time.monotonic() - started, time.process_time() - cpu
    finally:
        await producer.stop()
    return {"bulk_s": bulk_s, "bulk_cpu": bulk_cpu, "trickle_s": trickle_s, "trickle_cpu": trickle_cpu}


async def read(settings: Settings, topic: str, partitions: int, expected: int) -> tuple[float, float]:
    consumer = AIOKafkaConsumer(
        **KafkaConnection.from_settings(settings).kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        cpu, started = time.process_time(), time.monotonic()
        seen = 0
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                for record in records:
                    decode(record.value or b"", expected=(ConversionAudited,))
            seen += sum(len(r) for r in batches.values())
        return time.monotonic() - started, time.process_time() - cpu
    finally:
        await consumer.stop()


def on_disk(settings: Settings, topic: str) -> int:
    data = Path(settings.stack_dir) / "kafka" / "data"
    return sum(f.stat().st_size for f in data.glob(f"{topic}-*/*.log"))


async def main_async(args: argparse.Namespace) -> None:
    settings = Settings()
    prefix = f"bench-compress-{uuid.uuid4().hex[:8]}-"
    started = time.monotonic()
    events = realistic(args.events)
    size = sum(len(k) + len(v) for k, v in events) / len(events)
    built = time.monotonic() - started
    print(f"{len(events):,} realistic ConversionAudited built in {built:.1f}s, key+value {size:.0f} B")
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    codecs = args.codecs.split(",")
    # A codec may be listed more than once (alternate rounds): each round has its own topics.
    names = [f"{prefix}{i}-{codec}" for i, codec in enumerate(codecs)]
    topics = names + [f"{name}-trickle" for name in names]
    try:
        await admin.create_topics([NewTopic(t, args.partitions, 1) for t in topics])
        print(
            f"{'codec':6} | {'disk B/event (bulk)':>19} | {'disk B/event (1/batch)':>22} | {'produce events/s':>16} | "
            f"{'produce CPU us/event':>20} | {'1/batch events/s':>16} | {'read+decode events/s':>20} | "
            f"{'read+decode CPU us/event':>24}"
        )
        for codec, topic in zip(codecs, names, strict=True):
            produced = await produce(settings, topic, codec, events, args.trickle)
            read_s, read_cpu = await read(settings, topic, args.partitions, len(events))
            disk = on_disk(settings, topic) / len(events)
            disk_trickle = on_disk(settings, topic + "-trickle") / args.trickle
            n = len(events)
            print(
                f"{codec:6} | {disk:19.0f} | {disk_trickle:22.0f} | {n / produced['bulk_s']:16,.0f} | "
                f"{produced['bulk_cpu'] / n * 1e6:20.1f} | {args.trickle / produced['trickle_s']:16,.0f} | "
                f"{n / read_s:20,.0f} | {read_cpu / n * 1e6:24.1f}"
            )
    finally:
        await admin.delete_topics(topics)
        await admin.close()


def main() -> None:
    export_role_env("admin")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--trickle", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--codecs", default="none,gzip,lz4,zstd")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
