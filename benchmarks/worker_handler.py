"""Benchmark: the worker's conversion handler alone, its CPU per batch, against real Redis and PostgreSQL.

Runs `ConversionHandler.handle` in this process on batches of `--batch` fresh requests (EUR->USD), with the
worker's own wiring (`build_rate_lookup`, `build_decider`, `AsyncRecorder`, `AckedPublisher`) except the
producer: a sender whose every send is acknowledged at once, so the figure is the handler's CPU (parse,
one rate lookup in Redis, one durable record statement, the results' serialization), without aiokafka's
fetch and produce or the event loop's other tasks. It reads its settings from the environment of a
running worker (`--env-from-pid`, e.g. one started by `benchmarks/serve_isolated.py`), so it uses that
instance's schema, Redis key prefix and seeded rates, and leaves its audit rows there (dropped with it).

Because it only uses APIs that main has too, run it against another checkout's code for a before/after
pair: `PYTHONPATH=/path/to/other/checkout python benchmarks/worker_handler.py ...` (alternate them).

    python benchmarks/worker_handler.py --env-from-pid WORKER_PID [--batches 2000] [--batch 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from ces.adapters.kafka.producer import AckedPublisher
from ces.adapters.postgres.async_record import AsyncRecorder
from ces.bootstrap import build_decider, build_engine, build_rate_lookup, build_redis, use_event_loop
from ces.events.conversions import ConversionRequested
from ces.services.conversion_handler import ConversionHandler
from ces.services.ports import Received
from ces.settings import Settings


class AckedAtOnce:
    """A `Sender` whose sends are acknowledged before they are awaited."""

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class NoDeadLetters:
    async def publish(self, message: Received, reason: str, detail: str) -> None:
        raise AssertionError(f"dead letter: {reason} {detail}")


def environment_of(pid: int) -> dict[str, str]:
    pairs = (entry.split("=", 1) for entry in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0"))
    return {k: v for k, v in (p for p in pairs if len(p) == 2) if k.startswith("CES_")}


def batch_of(n: int, offset: int) -> list[Received]:
    return [
        Received(
            "conversion-requests",
            0,
            offset + i,
            None,
            ConversionRequested(
                request_id=uuid.uuid4(), base_currency="EUR", target_currency="USD", amount=Decimal("100.00")
            ).to_json(),
        )
        for i in range(n)
    ]


async def run(args: argparse.Namespace, settings: Settings) -> None:
    engine = build_engine(settings, pre_ping=False)
    redis_client = build_redis(settings)
    store = AsyncRecorder(engine, connections=1)
    handler = ConversionHandler(
        build_decider(settings, build_rate_lookup(settings, engine, redis_client)),
        store,
        AckedPublisher(AckedAtOnce(), settings.topic_prefix),
        NoDeadLetters(),
        max_amount=settings.max_amount,
    )
    try:
        for i in range(args.warmup):
            await handler.handle(batch_of(args.batch, i * args.batch))
        cpu: list[float] = []
        wall: list[float] = []
        for i in range(args.batches):
            batch = batch_of(args.batch, (args.warmup + i) * args.batch)
            c0, w0 = time.process_time(), time.perf_counter()
            decided = await handler.handle(batch)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            assert decided == args.batch
        per = statistics.fmean(cpu) * 1e6
        print(
            f"batch {args.batch}: {args.batches} batches, handler CPU {per:.0f} us/batch "
            f"({per / args.batch:.0f} us/request), median {statistics.median(cpu) * 1e6:.0f} us; "
            f"wall median {statistics.median(wall) * 1e3:.2f} ms; load {os.getloadavg()[0]:.2f}"
        )
    finally:
        store.close()
        await redis_client.aclose()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-from-pid", type=int, required=True, help="a running worker of the instance to use")
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1, help="requests per batch")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    os.environ.update(environment_of(args.env_from_pid))
    settings = Settings()
    use_event_loop(settings)
    asyncio.run(run(args, settings))


if __name__ == "__main__":
    main()
