"""Benchmark: the floor of CES's conversion round trip on this machine, measured with bare-minimum code (not CES).

What any Python implementation of `POST /v1/conversions` must do with CES's guarantees, written as plainly
as possible and run against the real shared stack (Kafka SASL/SCRAM, PostgreSQL, Redis), in stages:

    pg          c concurrent tasks, each a 1-row INSERT committed durably (psycopg2 in async mode on the
                event loop, or a thread pool: --pg-mode)
    kafka-echo  c clients produce a record (acks=all) to a request topic; an echo process (plain aiokafka
                getmany loop) re-produces each to a reply topic (acks=all); one reply reader resolves the
                clients' futures by key: two acks=all produces and two fetches per round trip
    http        a bare aiohttp server (uvloop): POST parses the JSON body, produces the request, awaits the
                reply, answers JSON (--mode full); the echo process does the worker's part per fetched batch:
                one Redis HGET of the rate, one multi-row INSERT committed durably, then the replies.
                --mode hello answers a constant JSON without Kafka (the HTTP layer's own floor).
                Driven by the reference peer's compare.py (wrk), alternating with the peer (start it first:
                cd /work/shared/reference-peer && ./up.sh; ./down.sh after).

Its own topics (4 partitions) and a scratch schema are created at the start and dropped at the end.
Credentials come from the CES_* environment (`set -a; . .stack/secrets/admin.env; set +a`).

    python benchmarks/floor.py pg [-c 1 8] [--seconds 5] [--pg-mode async|thread]
    python benchmarks/floor.py kafka-echo [--mode plain|full] [-c 1 8 32] [--linger 0 1] [--inflight 1] [--seconds 5]
    python benchmarks/floor.py http --mode full|hello [-c 8 32 128] [--seconds 10] [--rounds 2] [--inflight 1]
    python benchmarks/floor.py http --serve [--port 58090]   # serve only (prints its and the echo's pid)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.extensions
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ces.adapters.kafka.connection import kafka_kwargs
from ces.settings import Settings

COMPARE = "/work/shared/reference-peer/compare.py"
PARTITIONS = 4
RATE = "1.0842"


def pg_dsn() -> str:
    return Settings().migration_database_dsn.replace("postgresql+psycopg2://", "postgresql://", 1)


def kafka() -> dict[str, Any]:
    return kafka_kwargs(Settings())


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def summary(latencies: list[float], seconds: float, errors: int = 0) -> str:
    xs = sorted(latencies)

    def pct(p: float) -> float:
        return xs[max(0, min(len(xs) - 1, int(p / 100 * len(xs) + 0.999999) - 1))] * 1000 if xs else float("nan")

    return (
        f"{len(xs) / seconds:8.1f}/s  p50 {pct(50):6.2f}  p90 {pct(90):6.2f}  p99 {pct(99):6.2f} ms"
        f"  n {len(xs)}  errors {errors}"
    )


# --------------------------------------------------------------------------- PostgreSQL


async def pg_wait(conn: Any) -> None:
    """Drive an async-mode psycopg2 connection to completion on the event loop."""
    loop = asyncio.get_running_loop()
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        fut: asyncio.Future[None] = loop.create_future()
        fd = conn.fileno()

        def ready(f: asyncio.Future[None] = fut) -> None:
            if not f.done():
                f.set_result(None)

        if state == psycopg2.extensions.POLL_READ:
            loop.add_reader(fd, ready)
            try:
                await fut
            finally:
                loop.remove_reader(fd)
        else:
            loop.add_writer(fd, ready)
            try:
                await fut
            finally:
                loop.remove_writer(fd)


class AsyncPg:
    """One async-mode connection: autocommit, so every statement is its own durable transaction."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.conn: Any = None

    async def open(self) -> AsyncPg:
        self.conn = psycopg2.connect(pg_dsn(), async_=1, options=f"-csearch_path={self.schema}")
        await pg_wait(self.conn)
        return self

    async def execute(self, sql: bytes | str, params: Any = None) -> list[Any]:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        await pg_wait(self.conn)
        rows: list[Any] = cur.fetchall() if cur.description else []
        cur.close()
        return rows

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        cur = self.conn.cursor()
        values = b",".join(cur.mogrify("(%s,%s,%s,%s,%s,%s)", r) for r in rows)
        cur.execute(b"INSERT INTO audit VALUES " + values + b" ON CONFLICT (request_id) DO NOTHING")
        await pg_wait(self.conn)
        cur.close()


def row(request_id: str, amount: str = "100.00") -> tuple[Any, ...]:
    return (request_id, "EUR", "USD", amount, RATE, str((Decimal(amount) * Decimal(RATE)).quantize(Decimal("0.01"))))


def setup_schema(schema: str) -> None:
    with psycopg2.connect(pg_dsn()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
        cur.execute(
            f'CREATE TABLE "{schema}".audit (request_id uuid PRIMARY KEY, base text NOT NULL, quote text NOT NULL,'
            " amount numeric NOT NULL, rate numeric NOT NULL, result numeric NOT NULL,"
            " decided_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SHOW synchronous_commit")
        sync = cur.fetchone()
        cur.execute("SHOW fsync")
        print(f"postgres: synchronous_commit={sync[0] if sync else '?'} fsync={(cur.fetchone() or ['?'])[0]}")


def drop_schema(schema: str) -> None:
    conn = psycopg2.connect(pg_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()


async def closed_loop(c: int, seconds: float, warmup: float, one: Callable[[int], Awaitable[None]]) -> tuple[str, int]:
    """c tasks each calling `one` back to back; latencies of calls started within the measured window."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + warmup
    stop = start + seconds

    async def task(i: int) -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < stop:
            try:
                await one(i)
            except Exception:
                errors += 1
                continue
            if t0 >= start:
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(task(i) for i in range(c)))
    return summary(latencies, seconds, errors), len(latencies)


async def pg_async(a: argparse.Namespace, c: int) -> tuple[str, int]:
    conns = [await AsyncPg(a.schema).open() for _ in range(c)]

    async def one(i: int) -> None:
        await conns[i].insert([row(str(uuid.uuid4()))])

    try:
        return await closed_loop(c, a.seconds, a.warmup, one)
    finally:
        for ac in conns:
            ac.conn.close()


async def pg_thread(a: argparse.Namespace, c: int) -> tuple[str, int]:
    local = threading.local()
    opened: list[Any] = []

    def insert() -> None:
        if not hasattr(local, "conn"):
            local.conn = psycopg2.connect(pg_dsn(), options=f"-csearch_path={a.schema}")
            local.conn.autocommit = True
            opened.append(local.conn)
        with local.conn.cursor() as cur:
            sql = "INSERT INTO audit VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (request_id) DO NOTHING"
            cur.execute(sql, row(str(uuid.uuid4())))

    pool = ThreadPoolExecutor(c)
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        await loop.run_in_executor(pool, insert)

    try:
        return await closed_loop(c, a.seconds, a.warmup, one)
    finally:
        pool.shutdown()
        for conn in opened:
            conn.close()


async def stage_pg(a: argparse.Namespace) -> None:
    for c in a.concurrency:
        for mode in a.pg_mode:
            before = load()
            cpu0 = cpu_seconds(os.getpid())
            line, n = await (pg_async if mode == "async" else pg_thread)(a, c)
            cpu = (cpu_seconds(os.getpid()) - cpu0) / max(n, 1) * 1000
            print(f"pg {mode:6s} c={c:<3d} {line}  client cpu {cpu:.2f} ms/op  {before} -> {load()}", flush=True)


# --------------------------------------------------------------------------- Kafka


async def create_topics(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names])
    finally:
        await admin.close()


async def delete_topics(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka())
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def echo(a: argparse.Namespace) -> None:
    """The worker's minimum: fetch a batch, (full: Redis HGET, one durable multi-row INSERT), produce replies."""
    consumer = AIOKafkaConsumer(**kafka(), group_id=f"{a.prefix}-echo", enable_auto_commit=False)
    producer = AIOKafkaProducer(**kafka(), acks="all", linger_ms=a.linger[0])
    await consumer.start()
    await producer.start()
    consumer.assign([TopicPartition(a.request_topic, p) for p in range(PARTITIONS)])
    for tp in consumer.assignment():
        await consumer.seek_to_beginning(tp)
    conns: asyncio.Queue[AsyncPg] = asyncio.Queue()
    redis: Any = None
    if a.mode == "full":
        import redis.asyncio as aioredis

        for _ in range(a.inflight):
            conns.put_nowait(await AsyncPg(a.schema).open())
        redis = aioredis.from_url(Settings().redis_dsn)
        await redis.hset(f"{a.prefix}:rates", "EUR:USD", RATE)  # the app user may HSET/HGET, not SET/GET
    slots = asyncio.Semaphore(a.inflight)

    async def handle(records: list[Any]) -> None:
        try:
            replies: list[tuple[bytes | None, bytes]] = []
            if redis is not None:
                rate = Decimal((await redis.hget(f"{a.prefix}:rates", "EUR:USD")).decode())
                rows = []
                for r in records:
                    body = json.loads(r.value or b"{}")
                    result = (Decimal(body["amount"]) * rate).quantize(Decimal("0.01"))
                    rows.append((body["request_id"], body["base_currency"], body["target_currency"],
                                 body["amount"], str(rate), str(result)))  # fmt: skip
                    replies.append((r.key, json.dumps({**body, "rate": str(rate), "result": str(result)}).encode()))
                pg = await conns.get()
                try:
                    await pg.insert(rows)  # durable before anything is published
                finally:
                    conns.put_nowait(pg)
            else:
                replies = [(r.key, r.value or b"") for r in records]
            futures = [await producer.send(a.reply_topic, value, key=key) for key, value in replies]
            await asyncio.gather(*futures)
        finally:
            slots.release()

    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    print("ready", flush=True)
    # Batches in fetch order with their offsets; offsets are committed only up to the first unfinished one.
    running: list[tuple[asyncio.Task[None], dict[TopicPartition, int]]] = []
    last_commit = time.monotonic()
    while not stopping.is_set():
        await slots.acquire()
        batches = await consumer.getmany(timeout_ms=200, max_records=1000)
        records = [r for rs in batches.values() for r in rs]
        if not records:
            slots.release()
            continue
        running.append((asyncio.create_task(handle(records)), {tp: rs[-1].offset + 1 for tp, rs in batches.items()}))
        if time.monotonic() - last_commit > 1:  # offsets of finished batches, off the latency path
            offsets: dict[TopicPartition, int] = {}
            while running and running[0][0].done():
                offsets |= running.pop(0)[1]
            if offsets:
                await consumer.commit(offsets)
            last_commit = time.monotonic()
    await asyncio.gather(*(t for t, _ in running))
    await producer.stop()
    await consumer.stop()
    if redis is not None:
        await redis.delete(f"{a.prefix}:rates")
        await redis.aclose()
    while not conns.empty():
        conns.get_nowait().conn.close()


class Roundtrip:
    """The gateway's part: one producer, one reply reader resolving futures by key."""

    def __init__(self, a: argparse.Namespace, linger: int) -> None:
        self.a = a
        self.producer = AIOKafkaProducer(**kafka(), acks="all", linger_ms=linger)
        self.reader = AIOKafkaConsumer(**kafka(), enable_auto_commit=False)
        self.pending: dict[bytes, asyncio.Future[bytes]] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.reader.start()
        tps = [TopicPartition(self.a.reply_topic, p) for p in range(PARTITIONS)]
        self.reader.assign(tps)
        await self.reader.seek_to_end(*tps)
        for tp in tps:
            await self.reader.position(tp)
        self.task = asyncio.create_task(self.read())

    async def read(self) -> None:
        while True:
            batches = await self.reader.getmany(timeout_ms=1000)
            for rs in batches.values():
                for r in rs:
                    fut = self.pending.pop(r.key or b"", None)
                    if fut is not None and not fut.done():
                        fut.set_result(r.value or b"")

    async def call(self, key: bytes, value: bytes) -> bytes:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[key] = fut
        try:
            await self.producer.send(self.a.request_topic, value, key=key)
            return await asyncio.wait_for(fut, 10)
        finally:
            self.pending.pop(key, None)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.producer.stop()
        await self.reader.stop()


async def start_echo(a: argparse.Namespace, mode: str, linger: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "echo", "--mode", mode, "--prefix", a.prefix, "--schema", a.schema,
        "--linger", str(linger), "--inflight", str(a.inflight), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise SystemExit(f"echo process did not start: {line!r}")
    return proc


async def stop_echo(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.kill()


def caller(rt: Roundtrip) -> Callable[[int], Awaitable[None]]:
    async def one(i: int) -> None:
        request_id = str(uuid.uuid4())
        body = {"base_currency": "EUR", "target_currency": "USD", "amount": "100.00", "request_id": request_id}
        await rt.call(request_id.encode(), json.dumps(body).encode())

    return one


async def stage_kafka_echo(a: argparse.Namespace) -> None:
    mode = "plain" if a.mode == "plain" else "full"
    for linger in a.linger:
        proc = await start_echo(a, mode, linger)
        rt = Roundtrip(a, linger)
        await rt.start()
        try:
            for c in a.concurrency:
                before = load()
                cpu0, ecpu0 = cpu_seconds(os.getpid()), cpu_seconds(proc.pid)

                line, n = await closed_loop(c, a.seconds, a.warmup, caller(rt))
                cpu = (cpu_seconds(os.getpid()) - cpu0) / max(n, 1) * 1000
                ecpu = (cpu_seconds(proc.pid) - ecpu0) / max(n, 1) * 1000
                print(
                    f"kafka-echo {mode} linger={linger} inflight={a.inflight} c={c:<3d} {line}"
                    f"  cpu ms/op client {cpu:.2f} echo {ecpu:.2f}"
                    f"  {before} -> {load()}",
                    flush=True,
                )
        finally:
            await rt.stop()
            await stop_echo(proc)


# --------------------------------------------------------------------------- HTTP


async def stage_http(a: argparse.Namespace) -> None:
    from aiohttp import web

    served = 0
    rt: Roundtrip | None = None
    proc: asyncio.subprocess.Process | None = None
    if a.mode == "full":
        proc = await start_echo(a, "full", a.linger[0])
        rt = Roundtrip(a, a.linger[0])
        await rt.start()
    hello = json.dumps({"status": "ok", "rate": RATE}).encode()

    async def convert(request: web.Request) -> web.Response:
        nonlocal served
        try:
            body = json.loads(await request.read())
            request_id = str(uuid.UUID(body["request_id"]))
            Decimal(body["amount"])
        except (ValueError, KeyError, TypeError, ArithmeticError):
            return web.Response(status=400, body=b'{"title":"bad request"}', content_type="application/problem+json")
        served += 1
        if rt is None:
            return web.Response(body=hello, content_type="application/json")
        return web.Response(body=await rt.call(request_id.encode(), json.dumps(body).encode()),
                            content_type="application/json")  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/conversions", convert)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", a.port).start()
    try:
        if a.serve:  # for an outside load generator (e.g. gateway_ab.py with CES beside it), until SIGTERM
            stopping = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
            print(f"ready: port {a.port}, server pid {os.getpid()}, echo pid {proc.pid if proc else '-'}", flush=True)
            await stopping.wait()
        for c in [] if a.serve else a.concurrency:
            print(f"http {a.mode} c={c}: {load()}", flush=True)
            cpu0 = cpu_seconds(os.getpid())
            ecpu0 = cpu_seconds(proc.pid) if proc else 0.0
            served = 0
            cmp = await asyncio.create_subprocess_exec(
                "python3", COMPARE, "--concurrency", str(c), "--duration", str(a.seconds), "--rounds",
                str(a.rounds), "--ces-url", f"http://127.0.0.1:{a.port}/v1/conversions",
            )  # fmt: skip
            await cmp.wait()
            n = max(served, 1)
            cpu = (cpu_seconds(os.getpid()) - cpu0) / n * 1000
            ecpu = ((cpu_seconds(proc.pid) - ecpu0) / n * 1000) if proc else 0.0
            print(f"http {a.mode} c={c}: cpu ms/request server {cpu:.2f} echo {ecpu:.2f}; {load()}", flush=True)
    finally:
        await runner.cleanup()
        if rt is not None:
            await rt.stop()
        if proc is not None:
            await stop_echo(proc)


# --------------------------------------------------------------------------- main


async def run(a: argparse.Namespace) -> None:
    if a.stage == "echo":
        await echo(a)
        return
    topics = [a.request_topic, a.reply_topic]
    setup_schema(a.schema)
    await create_topics(topics)
    try:
        if a.stage == "pg":
            await stage_pg(a)
        elif a.stage == "kafka-echo":
            await stage_kafka_echo(a)
        else:
            await stage_http(a)
    finally:
        await delete_topics(topics)
        drop_schema(a.schema)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["pg", "kafka-echo", "http", "echo"])
    p.add_argument("-c", "--concurrency", type=int, nargs="+")
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--linger", type=int, nargs="+", default=[0])
    p.add_argument("--inflight", type=int, default=1, help="echo: batches handled at once (default 1)")
    p.add_argument("--pg-mode", nargs="+", default=["async", "thread"], choices=["async", "thread"])
    p.add_argument("--mode", choices=["full", "hello", "plain"], help="http: full|hello; kafka-echo: plain|full")
    p.add_argument("--port", type=int, default=58090)
    p.add_argument("--serve", action="store_true", help="http: serve until SIGTERM instead of running compare.py")
    p.add_argument("--prefix", default=f"floor{uuid.uuid4().hex[:8]}")
    p.add_argument("--schema", default="")
    a = p.parse_args()
    a.concurrency = a.concurrency or {"pg": [1, 8], "kafka-echo": [1, 8, 32], "http": [8, 32, 128]}.get(a.stage, [])
    a.mode = a.mode or {"kafka-echo": "plain", "http": "full"}.get(a.stage, "full")
    a.schema = a.schema or a.prefix
    a.request_topic, a.reply_topic = f"{a.prefix}.requests", f"{a.prefix}.replies"
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(run(a))


if __name__ == "__main__":
    main()
