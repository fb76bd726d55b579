"""Benchmark: the HTTP gateway under concurrent load, against a running CES (`make run`).

For POST /v1/conversions (each a full request/reply over Kafka through the worker) and GET
/v1/rates/{base}/{target}, at each concurrency level (default 8, 32, 128) it sends a fixed number of
requests from one asyncio client and prints requests/s, p50/p90/p99 latency, errors, and the CPU share
the load generator itself used (it runs on the same 2 cores as the service, so read the numbers with it).

    python benchmarks/gateway.py [--url http://127.0.0.1:8080] [--requests 3000] [--levels 8,32,128]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp

PAIRS = [("USD", "JPY"), ("EUR", "GBP"), ("GBP", "EUR"), ("CHF", "USD")]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_level(
    concurrency: int, total: int, call: Callable[[int], Awaitable[int]]
) -> tuple[float, list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def client() -> None:
        nonlocal errors
        for i in counter:
            started = time.perf_counter()
            status = await call(i)
            latencies.append(time.perf_counter() - started)
            errors += status >= 400

    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - wall0
    return wall, latencies, errors, (cpu_seconds() - cpu0) / wall


def report(name: str, concurrency: int, wall: float, latencies: list[float], errors: int, cpu: float) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<28} c={concurrency:<4} {len(latencies) / wall:8.0f} req/s  p50 {q[49] * 1000:7.1f} ms  "
        f"p90 {q[89] * 1000:7.1f} ms  p99 {q[98] * 1000:7.1f} ms  errors {errors}  load-generator CPU {cpu:.0%}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--levels", default="8,32,128")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    connector = aiohttp.TCPConnector(limit=max(levels))
    async with aiohttp.ClientSession(args.url, connector=connector) as session:

        async def convert(i: int) -> int:
            base, target = PAIRS[i % len(PAIRS)]
            body = {
                "base_currency": base,
                "target_currency": target,
                "amount": "100.00",
                "request_id": str(uuid.uuid4()),
            }
            async with session.post("/v1/conversions", json=body) as response:
                await response.read()
                return response.status

        async def rate(i: int) -> int:
            base, target = PAIRS[i % len(PAIRS)]
            async with session.get(f"/v1/rates/{base}/{target}") as response:
                await response.read()
                return response.status

        await run_level(4, 100, convert)  # warm-up: connections, caches, JIT-free but still worth it
        for name, call in (("POST /v1/conversions", convert), ("GET /v1/rates/{base}/{target}", rate)):
            for concurrency in levels:
                report(name, concurrency, *await run_level(concurrency, args.requests, call))


if __name__ == "__main__":
    asyncio.run(main())
