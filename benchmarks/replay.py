"""Benchmark: `ces replay --projection all` over 1,000,000 `ConversionAudited` events, end to end.

On an isolated topic prefix it creates the CES topics (`--partitions`), publishes `--rate-days` days of the
bundled ECB history as `RateFetched` events (real sizes; the audits reference two of those rows, so the
replay must project rates first), then `--events` `ConversionAudited` events: two are built and validated
with pydantic (a direct and a cross conversion), the rest are the same JSON with `event_id`, `audit_id`
and `request_id` varied by string formatting (millions of pydantic round trips would take longer than
the replay). Then it times `python -m ces replay --projection all --target-schema bench_replay_<run>` as
a subprocess, start to exit, and prints:

- events/s end to end, and each phase's own events/s (from the replay's report);
- a raw `COPY` of the same rows into empty tables of the same shape, in the same run, and the ratio;
- the replay's peak RSS (of its largest process) and CPU time (`getrusage(RUSAGE_CHILDREN)` after it
  exited), and with `--jobs` > 1 each audit worker's CPU and peak RSS (from the replay's log), and every
  process's peak RSS summed (the main process logs its own);
- the WAL the server wrote during the replay (`pg_current_wal_lsn()` before and after, `pg_stat_wal`'s records,
  full-page images and "buffers full" writes: other sessions' too) and the checkpoints forced
  (`pg_stat_bgwriter.checkpoints_req`);
- how long `--verify-only` takes over those rows (the target compared with itself);
- bytes per event on disk for both topics (the local stack's segment files, uncompressed as CES produces
  them), bytes per 1M events, and what gzip on 1,000-event batches would make of the audits.

Needs the stack (`cesdev stack up`). Cleans up its schema and topics unless `--keep`.

    python benchmarks/replay.py [--events 1000000] [--partitions 4] [--rate-days 30] [--keep]
        [--jobs N] [--compression none|gzip|lz4|zstd] [--no-verify]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import os
import random
import re
import resource
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import create_engine, text

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection, kafka_kwargs
from ces.adapters.kafka.producer import compression_type
from ces.adapters.providers.ecb_history import bundled_quotes
from ces.events.base import utc_now
from ces.events.conversions import ConversionAudited
from ces.events.rates import RateFetched
from ces.events.registry import decode
from ces.services.backfill import backfill_events
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

WORKER = re.compile(r"audit worker (?P<n>\d+): (?P<events>\d+) events, CPU (?P<cpu>[\d.]+)s, peak RSS (?P<rss>\d+) MiB")
MAIN = re.compile(r"replay main process: CPU (?P<cpu>[\d.]+)s, peak RSS (?P<rss>\d+) MiB")

# Sentinels replaced by format fields in the JSON template.
EVENT_ID = uuid.UUID("11111111-1111-4111-8111-111111111111")
AUDIT_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")
REQUEST_ID = uuid.UUID("33333333-3333-4333-8333-333333333333")


def template(rates: dict[str, RateFetched], cross: bool) -> str:
    """A validated event as JSON, with `{e}`, `{a}` and `{r}` where its ids go."""
    usd, jpy = rates["USD"], rates["JPY"]
    now = utc_now()
    event = ConversionAudited(
        event_id=EVENT_ID,
        occurred_at=now,
        audit_id=AUDIT_ID,
        request_id=REQUEST_ID,
        rate_id=usd.rate_id,
        rate_ids=[usd.rate_id, jpy.rate_id] if cross else [usd.rate_id],
        rate_kind="cross" if cross else "direct",
        base_currency="USD" if cross else "EUR",
        target_currency="JPY" if cross else "USD",
        input_amount=Decimal("1234.56"),
        rate_value=Decimal("148.6137532133676") if cross else usd.rate_value,
        margin=Decimal("0.01"),
        output_amount=Decimal("181643") if cross else Decimal("1331.25"),
        converted_at=now,
    )
    raw = event.model_dump_json().replace("{", "{{").replace("}", "}}")
    return raw.replace(str(EVENT_ID), "{e}").replace(str(AUDIT_ID), "{a}").replace(str(REQUEST_ID), "{r}")


def realistic_audits(rates: dict[str, RateFetched], n: int) -> list[ConversionAudited]:
    """Events as varied as real ones (random ids, amounts, pairs, times): for size and compression only."""
    rng = random.Random(3)
    codes = sorted(rates)
    start = utc_now()
    events = []
    for i in range(n):
        target = rates[rng.choice(codes)]
        cross = rng.random() < 0.5
        legs = [rates[rng.choice(codes)].rate_id, target.rate_id] if cross else [target.rate_id]
        at = start + timedelta(milliseconds=i * rng.randint(1, 2000))
        request_id = uuid.uuid4()
        events.append(
            ConversionAudited(
                event_id=uuid.uuid4(),
                occurred_at=at,
                audit_id=uuid.uuid4(),
                request_id=request_id,
                rate_id=legs[0],
                rate_ids=legs,
                rate_kind="cross" if cross else "direct",
                base_currency="GBP" if cross else "EUR",
                target_currency=target.target_currency,
                input_amount=Decimal(rng.randint(1, 10**8)).scaleb(-2),
                rate_value=Decimal(rng.randint(10**15, 10**16)).scaleb(-rng.randint(10, 15)),
                margin=Decimal("0.01"),
                output_amount=Decimal(rng.randint(1, 10**10)).scaleb(-2),
                converted_at=at,
            )
        )
    return events


def ecb_rates(args: argparse.Namespace) -> dict[str, RateFetched]:
    """The newest publication of each pair in the `--rate-days` published (what the audits reference)."""
    end = date(2026, 10, 30)
    rates: dict[str, RateFetched] = {}
    for quote in bundled_quotes(end - timedelta(days=args.rate_days), end):
        for event in backfill_events(quote):
            assert isinstance(event, RateFetched)
            rates[event.target_currency] = event
    return rates


def ids(i: int) -> tuple[str, str, str]:
    tail = f"{i:012x}"
    return f"e0000000-0000-4000-8000-{tail}", f"a0000000-0000-4000-8000-{tail}", f"c0000000-0000-4000-8000-{tail}"


def audit_json(templates: tuple[str, str], i: int) -> tuple[bytes, bytes]:
    e, a, r = ids(i)
    return r.encode(), templates[i % 2].format(e=e, a=a, r=r).encode()


async def published(settings: Settings, prefix: str, args: argparse.Namespace) -> bool:
    """Whether an earlier run (`--topics`) left this many audits and rates on the prefix's topics."""
    names = [prefix + "rates-fetched", prefix + "conversions-audited"]
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    try:
        # Listed first: describing a topic that does not exist would have the broker create it (1 partition).
        if not set(names) <= set(await admin.list_topics()):
            return False
        described = {t["topic"]: t for t in await admin.describe_topics(names)}
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**kafka_kwargs(settings.kafka_bootstrap), group_id=None)
    await consumer.start()
    try:
        counts = {}
        for name in names:
            tps = [TopicPartition(name, p["partition"]) for p in described[name]["partitions"]]
            counts[name] = sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()
    return counts[names[1]] == args.events and counts[names[0]] > 0


async def publish(settings: Settings, prefix: str, args: argparse.Namespace) -> tuple[dict[str, RateFetched], float]:
    if args.topics and await published(settings, prefix, args):
        print(f"reusing the {args.events:,} audits and their rates on {prefix}*")
        return ecb_rates(args), 0.0
    await ensure_topics(KafkaConnection.from_settings(settings), partitions=args.partitions, prefix=prefix)
    producer = AIOKafkaProducer(
        **kafka_kwargs(settings.kafka_bootstrap),
        acks=1,
        linger_ms=50,
        max_batch_size=1024 * 1024,
        compression_type=compression_type(args.compression),
    )
    await producer.start()
    try:
        end = date(2026, 10, 30)
        rates: dict[str, RateFetched] = {}
        pending = []
        for quote in bundled_quotes(end - timedelta(days=args.rate_days), end):
            for event in backfill_events(quote):
                assert isinstance(event, RateFetched)
                rates[event.target_currency] = event  # the newest publication of each pair
                pending.append(await producer.send(prefix + "rates-fetched", event.to_json(), key=event.key()))
        await asyncio.gather(*pending)
        print(f"rates: {len(pending):,} RateFetched events published ({args.rate_days} days of ECB history)")

        templates = (template(rates, cross=False), template(rates, cross=True))
        for i in range(2):  # the templated JSON must decode exactly like a CES-produced event
            decoded = decode(audit_json(templates, i)[1], expected=ConversionAudited)
            assert isinstance(decoded, ConversionAudited) and str(decoded.request_id) == ids(i)[2]
        topic = prefix + "conversions-audited"
        started = time.monotonic()
        pending = []
        for i in range(args.events):
            key, value = audit_json(templates, i)
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        seconds = time.monotonic() - started
        print(
            f"audits: {args.events:,} ConversionAudited events published in {seconds:.1f}s "
            f"({args.events / seconds:,.0f} events/s, compression {args.compression})"
        )
        return rates, seconds
    finally:
        await producer.stop()


def raw_copy_seconds(settings: Settings, schema: str) -> tuple[float, int]:
    """The yardstick: a plain COPY FROM STDIN of the rows the replay wrote (rates, requests, audits), into
    empty tables of the same shape (`LIKE ... INCLUDING ALL`: primary keys, unique request id, indexes,
    checks; no triggers or foreign keys), timed without the export. Same database, same run."""
    tables = ("exchange_rate", "conversion_request", "conversion_audit")
    scratch = f"{schema}_copy"
    engine = create_engine(settings.migration_database_dsn)
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"CREATE SCHEMA {scratch}")
            dumps = {}
            for table in tables:
                cursor.execute(f"CREATE TABLE {scratch}.{table} (LIKE {schema}.{table} INCLUDING ALL)")
                dumps[table] = io.BytesIO()
                cursor.copy_expert(f"COPY {schema}.{table} TO STDOUT", dumps[table])
                dumps[table].seek(0)
            raw.commit()
            started = time.monotonic()
            for table in tables:
                cursor.copy_expert(f"COPY {scratch}.{table} FROM STDIN", dumps[table])
            raw.commit()
            seconds = time.monotonic() - started
            rows = sum(dump.getvalue().count(b"\n") for dump in dumps.values())
            cursor.execute(f"DROP SCHEMA {scratch} CASCADE")
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()
    return seconds, rows


WAL_STATS = "SELECT wal_records, wal_fpi, wal_buffers_full FROM pg_stat_wal"


def wal_position(settings: Settings) -> tuple[str, int, tuple[int, ...]]:
    """The server's WAL insert position, its count of requested (forced) checkpoints and `pg_stat_wal`'s
    records, full-page images and "WAL buffers full" writes."""
    engine = create_engine(settings.migration_database_dsn)
    try:
        with engine.connect() as conn:
            lsn = conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
            forced = conn.execute(text("SELECT checkpoints_req FROM pg_stat_bgwriter")).scalar_one()
            stats = tuple(int(v) for v in conn.execute(text(WAL_STATS)).one())
    finally:
        engine.dispose()
    return str(lsn), int(forced), stats


def wal_since(settings: Settings, before: tuple[str, int, tuple[int, ...]]) -> str:
    """What the server wrote to its WAL since `before` (the whole server's: other sessions count too)."""
    engine = create_engine(settings.migration_database_dsn)
    try:
        with engine.connect() as conn:
            written = int(
                conn.execute(
                    text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), CAST(:l AS pg_lsn))"), {"l": before[0]}
                ).scalar_one()
            )
            forced = int(conn.execute(text("SELECT checkpoints_req FROM pg_stat_bgwriter")).scalar_one()) - before[1]
            after = conn.execute(text(WAL_STATS)).one()
            records, fpi, full = (int(v) - b for v, b in zip(after, before[2], strict=True))
            size = conn.execute(text("SHOW max_wal_size")).scalar_one()
            compression = conn.execute(text("SHOW wal_compression")).scalar_one()
    finally:
        engine.dispose()
    return (
        f"WAL written during the replay (the whole server's): {written / 2**20:,.0f} MiB in {records:,} records, "
        f"{fpi:,} full-page images, {full:,} writes because the WAL buffers were full; forced checkpoints {forced} "
        f"(max_wal_size {size}, wal_compression {compression})"
    )


def on_disk(settings: Settings, topic: str) -> int | None:
    data = Path(settings.stack_dir) / "kafka" / "data"
    if not data.is_dir():
        return None
    return sum(f.stat().st_size for f in data.glob(f"{topic}-*/*.log"))


async def delete_topics(settings: Settings, prefix: str) -> None:
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    try:
        await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(prefix)])
    finally:
        await admin.close()


def main() -> None:
    export_role_env("admin")  # the local stack's credentials, unless CES_* are set
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate-days", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the topics and the target schema")
    parser.add_argument("--jobs", type=int, default=None, help="ces replay --jobs (default: the replay's own)")
    parser.add_argument("--batch-size", type=int, default=None, help="ces replay --batch-size (default: its own)")
    parser.add_argument(
        "--compression",
        choices=["none", "gzip", "lz4", "zstd"],
        default="none",
        help="the benchmark producer's compression_type for both topics (lz4, zstd need cramjam)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip timing --verify-only")
    parser.add_argument(
        "--topics",
        metavar="NAME",
        help="use the topics of prefix bench-replay-NAME- and keep them: published by the first run, reused by the "
        "next ones with the same --events (--drop-topics deletes them after the run)",
    )
    parser.add_argument("--drop-topics", action="store_true", help="with --topics: delete them after this run")
    args = parser.parse_args()

    settings = Settings()
    run = uuid.uuid4().hex[:8]
    prefix, schema = f"bench-replay-{args.topics or run}-", f"bench_replay_{run}"
    rates, _ = asyncio.run(publish(settings, prefix, args))
    env = {**os.environ, "CES_TOPIC_PREFIX": prefix, "CES_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    log = Path(f"/tmp/{schema}.log")
    try:
        wal_before = wal_position(settings)
        started = time.monotonic()
        with open(log, "w") as out:
            subprocess.run(
                [sys.executable, "-m", "ces", "replay", "--projection", "all", "--target-schema", schema]
                + ([] if args.jobs is None else ["--jobs", str(args.jobs)])
                + ([] if args.batch_size is None else ["--batch-size", str(args.batch_size)]),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
            )
        seconds = time.monotonic() - started
        wal = wal_since(settings, wal_before)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        lines = log.read_text().splitlines()
        report = [line for line in lines if line.startswith(("  ", "replay "))]
        print("\n".join(report))
        workers = [WORKER.search(line) for line in lines]
        worker_cpu = [float(m["cpu"]) for m in workers if m]
        for m in workers:
            if m:
                print(f"  audit worker {m['n']}: {int(m['events']):,} events, CPU {m['cpu']}s, peak RSS {m['rss']} MiB")
        engine = create_engine(settings.database_dsn)
        with engine.connect() as conn:
            audits = conn.execute(text(f"SELECT count(*) FROM {schema}.conversion_audit")).scalar_one()
            n_rates = conn.execute(text(f"SELECT count(*) FROM {schema}.exchange_rate")).scalar_one()
        engine.dispose()
        assert audits == args.events, f"{audits} audit rows, expected {args.events}"
        total = args.events + n_rates
        print(
            f"replay end to end (process start -> exit): {seconds:.1f}s for {total:,} events: "
            f"{total / seconds:,.0f} events/s"
        )
        print(wal)
        copy_seconds, copy_rows = raw_copy_seconds(settings, schema)
        print(
            f"raw COPY of the rows of the same {total:,} events ({copy_rows:,} rows in 3 tables of the same shape): "
            f"{copy_seconds:.1f}s, {total / copy_seconds:,.0f} events/s; "
            f"replay / raw COPY = {copy_seconds / seconds:.0%}"
        )
        cpu = usage.ru_utime + usage.ru_stime
        print(
            f"replay processes: peak RSS {usage.ru_maxrss / 1024:,.0f} MiB (the largest one), "
            f"CPU {cpu:.1f}s in all ({cpu / seconds:.0%} of one core); "
            f"main process {cpu - sum(worker_cpu):.1f}s" + (f", audit workers {worker_cpu}" if worker_cpu else "")
        )
        main_rss = [int(m["rss"]) for m in map(MAIN.search, lines) if m]
        if main_rss:  # the replay logs its main process's own peak (older code did not)
            rss = main_rss + [int(m["rss"]) for m in workers if m]
            print(
                f"peak RSS per process: main {rss[0]} MiB"
                + (f", audit workers {rss[1:]} MiB" if rss[1:] else "")
                + f"; summed {sum(rss)} MiB (multiprocessing's resource tracker, ~13 MiB, not included)"
            )
        if not args.no_verify:
            started = time.monotonic()
            subprocess.run(  # the target against itself: both sides' checksums computed, as a real verify does
                [
                    sys.executable,
                    "-m",
                    "ces",
                    "replay",
                    "--verify-only",
                    "--target-schema",
                    schema,
                    "--live-schema",
                    schema,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                check=True,
            )
            print(f"verify of {total:,} rows (the target against itself): {time.monotonic() - started:.1f}s")
        audit_bytes, rate_bytes = (
            on_disk(settings, prefix + "conversions-audited"),
            on_disk(settings, prefix + "rates-fetched"),
        )
        sample = realistic_audits(rates, 1000)
        payload = sum(len(e.key()) + len(e.to_json()) for e in sample) / len(sample)
        gz = len(gzip.compress(b"".join(e.to_json() for e in sample))) / len(sample)
        print(
            f"ConversionAudited (1,000 built with random ids, amounts, pairs, times): key+value {payload:.0f} B; "
            f"gzip over the 1,000 as one batch {gz:.0f} B/event"
        )
        rate_sample = next(iter(rates.values()))
        print(f"RateFetched: key+value {len(rate_sample.key()) + len(rate_sample.to_json())} B")
        for name, size, count in (
            ("conversions-audited", audit_bytes, args.events),
            ("rates-fetched", rate_bytes, n_rates),
        ):
            if size is not None and count:
                print(
                    f"on disk, {name}: {size:,} B for {count:,} events = {size / count:.0f} B/event, "
                    f"{size / count * 1e6 / 1e9:.2f} GB per 1M events"
                )
    finally:
        if not args.keep and (not args.topics or args.drop_topics):
            asyncio.run(delete_topics(settings, prefix))
        if not args.keep:
            engine = create_engine(settings.migration_database_dsn)  # the replay made it as the owner
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            engine.dispose()


if __name__ == "__main__":
    main()
