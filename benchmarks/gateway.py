"""Benchmark: the HTTP gateway under concurrent load, alone or side by side with the reference peer.

Alone (against a running CES, `make run`): for POST /v1/conversions (each a full request/reply over Kafka
through the worker) and GET /v1/rates/{base}/{target}, at each concurrency level (default 8, 32, 128) it
sends a fixed number of requests from one asyncio client and prints requests/s, p50/p90/p99 latency,
errors, the machine's busy % and the CPU share the load generator itself used (it runs on the same
cores as the service, so read the numbers with it).

    python benchmarks/gateway.py [--url http://127.0.0.1:8080] [--requests 3000] [--levels 8,32,128]

Side by side (`--peer`): the original design (../shared/reference-peer, Django + gunicorn) and CES's POST
/v1/conversions under the same closed-loop load from the peer's own generator (`bench.py`, wrk engine,
which uses ~7% of a core), alternating peer, CES, peer, CES, ... per level so that machine noise hits
both alike. The peer is started (`up.sh`) when it is not answering, and stopped again afterwards if this
run started it. Prints every run, then per level the medians and the ratio CES / peer.

    python benchmarks/gateway.py --peer [--levels 8,32,128] [--rounds 3] [--duration 15]

Both modes send `--header 'Authorization: Bearer ces_...'` (a key with the convert scope, `ces keys create`)
with every CES request; raise `CES_RATE_LIMIT_PER_SECOND` on the gateway being measured, or the key's
token bucket answers 429 (the peer has no authentication, so the comparison includes CES's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import resource
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

PAIRS = [("USD", "JPY"), ("EUR", "GBP"), ("GBP", "EUR"), ("CHF", "USD")]
PEER_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference-peer"
PEER_URL = "http://127.0.0.1:58001/api/v1/convert/"
PEER_BODY = '{"base_currency":"EUR","target_currency":"USD","amount":"100.00"}'
CES_BODY = '{"base_currency":"EUR","target_currency":"USD","amount":"100.00","request_id":"__UUID__"}'


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def run_level(
    concurrency: int, total: int, call: Callable[[int], Awaitable[int]]
) -> tuple[float, list[float], int, float, float]:
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

    cpu0, wall0, (busy0, all0) = cpu_seconds(), time.perf_counter(), machine_ticks()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - wall0
    busy1, all1 = machine_ticks()
    return wall, latencies, errors, (cpu_seconds() - cpu0) / wall, (busy1 - busy0) / max(1, all1 - all0)


def report(
    name: str, concurrency: int, wall: float, latencies: list[float], errors: int, cpu: float, busy: float
) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<28} c={concurrency:<4} {len(latencies) / wall:8.0f} req/s  p50 {q[49] * 1000:7.1f} ms  "
        f"p90 {q[89] * 1000:7.1f} ms  p99 {q[98] * 1000:7.1f} ms  errors {errors}  machine busy {busy:.0%}  "
        f"load-generator CPU {cpu:.0%}",
        flush=True,
    )


async def alone(args: argparse.Namespace) -> None:
    levels = [int(x) for x in args.levels.split(",")]
    connector = aiohttp.TCPConnector(limit=max(levels))
    headers = dict(h.split(": ", 1) for h in args.header)
    async with aiohttp.ClientSession(args.url, connector=connector, headers=headers) as session:

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

        await run_level(4, 100, convert)  # warm-up: connections, caches
        for name, call in (("POST /v1/conversions", convert), ("GET /v1/rates/{base}/{target}", rate)):
            for concurrency in levels:
                report(name, concurrency, *await run_level(concurrency, args.requests, call))


def peer_answers() -> bool:
    request = urllib.request.Request(PEER_URL, data=PEER_BODY.encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 201)
    except (urllib.error.URLError, OSError):
        return False


def peer_python(peer_dir: Path) -> str:
    state = Path(os.environ.get("PEER_STATE_DIR") or Path(pwd.getpwnam("postgres").pw_dir) / "ces-reference-peer")
    python = state / "venv" / "bin" / "python"
    return str(python) if python.exists() else sys.executable


def bench(
    python: str, peer_dir: Path, url: str, body: str, concurrency: int, headers: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    command = [python, str(peer_dir / "bench.py"), url, "--body", body, "-c", str(concurrency)]
    command += ["-d", str(args.duration), "-w", str(args.warmup), "--json"]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((line for line in reversed(out.stdout.splitlines()) if line.startswith("{")), None)
    if line is None:
        raise SystemExit(f"bench.py failed against {url}:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(line)
    return result


def side_by_side(args: argparse.Namespace) -> None:
    peer_dir = Path(args.peer_dir)
    started_peer = False
    if not peer_answers():
        print(f"starting the reference peer ({peer_dir / 'up.sh'})", flush=True)
        subprocess.run([str(peer_dir / "up.sh")], check=True, stdout=subprocess.DEVNULL)
        started_peer = True
    python = peer_python(peer_dir)
    ces_url = args.url.rstrip("/") + "/v1/conversions"
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}", flush=True)
    try:
        for concurrency in [int(x) for x in args.levels.split(",")]:
            runs: dict[str, list[dict[str, Any]]] = {"peer": [], "ces": []}
            for i in range(args.rounds):
                for name, url, body, headers in (
                    ("peer", PEER_URL, PEER_BODY, []),
                    ("ces", ces_url, CES_BODY, args.header),
                ):
                    s = bench(python, peer_dir, url, body, concurrency, headers, args)
                    runs[name].append(s)
                    lat = s["latency_ms"]
                    print(
                        f"c={concurrency:<4} round {i + 1} {name:4s} {s['requests_per_s']:8.1f} req/s  "
                        f"p50 {lat['p50']:7.2f}  p90 {lat['p90']:7.2f}  p99 {lat['p99']:7.2f} ms  "
                        f"errors {s['errors']}  machine busy {s['machine_cpu_busy_pct']}%",
                        flush=True,
                    )
            med = {
                k: {m: statistics.median(r["latency_ms"][m] for r in v) for m in ("p50", "p90", "p99")}
                for k, v in runs.items()
            }
            rps = {k: statistics.median(r["requests_per_s"] for r in v) for k, v in runs.items()}
            errors = sum(r["errors"] for r in runs["ces"])
            print(
                f"c={concurrency:<4} ratio {rps['ces'] / rps['peer']:.2f}  CES {rps['ces']:.0f} req/s p50 "
                f"{med['ces']['p50']:.1f} p90 {med['ces']['p90']:.1f} p99 {med['ces']['p99']:.1f} ms, "
                f"errors {errors}  |  "
                f"peer {rps['peer']:.0f} req/s p50 {med['peer']['p50']:.1f} p99 {med['peer']['p99']:.1f} ms  (medians)",
                flush=True,
            )
    finally:
        if started_peer:
            subprocess.run([str(peer_dir / "down.sh")], check=False, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--requests", type=int, default=3000, help="alone: requests per level")
    parser.add_argument("--levels", default="8,32,128")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' sent with CES requests")
    parser.add_argument("--peer", action="store_true", help="side by side with the reference peer")
    parser.add_argument("--peer-dir", default=str(PEER_DIR))
    parser.add_argument("--rounds", type=int, default=3, help="side by side: runs per service and level")
    parser.add_argument("--duration", type=float, default=15, help="side by side: seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2, help="side by side: seconds discarded per run")
    args = parser.parse_args()
    if args.peer:
        side_by_side(args)
    else:
        asyncio.run(alone(args))


if __name__ == "__main__":
    main()
