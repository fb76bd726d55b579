"""Benchmark: two (or more) running CES builds under the same HTTP load, alternating, with CPU per request.

Each target is `NAME=URL,KEY_FILE,GATEWAY_PID,WORKER_PID` (as `benchmarks/serve_isolated.py` prints them).
For every round and target it runs the reference peer's generator (`bench.py`, wrk engine) against
`POST /v1/conversions` and reads the CPU time of the gateway's process tree and the worker's from /proc
before and after, so besides req/s and latency it prints the gateway's and the worker's CPU milliseconds
per request: a figure that moves much less than wall-clock numbers on a shared machine. Then medians.
It also reads the shared stack's own processes (the Kafka broker, PostgreSQL's postmaster and backends, Redis;
found by their ports in `Settings`), so the whole round trip's CPU per request is accounted for; on a stack
shared with other work that part counts everyone's use of it in the same seconds.

    python benchmarks/gateway_ab.py --target before=http://127.0.0.1:18181,/tmp/k1,101,102 \\
        --target after=http://127.0.0.1:18182,/tmp/k2,201,202 [--concurrency 32] [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway import CES_BODY, PEER_DIR, bench, peer_python

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (a `ces gateway --processes N` parent and its children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICK


def tree_cpu(root: int) -> float:
    """CPU seconds of `root`, its live descendants and every child it has reaped (PostgreSQL's postmaster: a
    backend that ends between two reads moves from the live ones into the postmaster's `cutime`/`cstime`, so
    it is neither lost nor, for one started meanwhile, missed, as a list of pids read once would have them)."""
    try:
        fields = Path(f"/proc/{root}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return cpu([p for p in tree(root) if p != root]) + sum(int(f) for f in fields[11:15]) / TICK


def stack_cpu(stack: dict[str, list[int]]) -> dict[str, float]:
    return {k: tree_cpu(v[0]) if k == "postgres" and v else cpu(v) for k, v in stack.items()}


def cmdlines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def services() -> dict[str, list[int]]:
    """The local stack's broker, PostgreSQL (postmaster and every backend) and Redis, by their ports."""
    from urllib.parse import urlsplit

    from ces.settings import Settings

    settings = Settings()
    pg_port, redis_port = str(urlsplit(settings.database_url).port), f":{urlsplit(settings.redis_url).port}"
    found: dict[str, list[int]] = {"kafka": [], "postgres": [], "redis": []}
    for pid, line in cmdlines().items():
        if "kafka.Kafka" in line:
            found["kafka"].append(pid)
        elif "redis-server" in line and redis_port in line:
            found["redis"].append(pid)
        elif "bin/postgres" in line and f"-p {pg_port}" in line:
            found["postgres"] = [pid]  # the postmaster: `stack_cpu` reads its backends at each read
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    targets = []
    for spec in args.target:
        name, rest = spec.split("=", 1)
        url, key_file, gateway_pid, worker_pid = rest.split(",")
        header = f"Authorization: Bearer {Path(key_file).read_text().strip()}"
        targets.append((name, url.rstrip("/") + "/v1/conversions", header, int(gateway_pid), int(worker_pid)))
    python = peer_python(PEER_DIR)
    results: dict[str, list[dict[str, Any]]] = {t[0]: [] for t in targets}
    for i in range(args.rounds):
        for name, url, header, gateway_pid, worker_pid in targets:
            gateway, worker, stack = tree(gateway_pid), tree(worker_pid), services()
            g0, w0, v0 = cpu(gateway), cpu(worker), stack_cpu(stack)
            s = bench(python, PEER_DIR, url, CES_BODY, args.concurrency, [header], args)
            g1, w1, v1 = cpu(gateway), cpu(worker), stack_cpu(stack)
            sent = max(1, int(s["sent_including_warmup"]))
            row = {
                "rps": s["requests_per_s"],
                "p50": s["latency_ms"]["p50"],
                "p99": s["latency_ms"]["p99"],
                "errors": s["errors"],
                "gw_ms": 1000 * (g1 - g0) / sent,
                "wk_ms": 1000 * (w1 - w0) / sent,
                **{f"{k}_ms": 1000 * (v1[k] - v0[k]) / sent for k in stack},
                "busy": s["machine_cpu_busy_pct"],
                "load": os.getloadavg()[0],
            }
            results[name].append(row)
            print(
                f"c={args.concurrency} round {i + 1} {name:<10} {row['rps']:7.1f} req/s  p50 {row['p50']:6.1f}  "
                f"p99 {row['p99']:6.1f} ms  errors {row['errors']}  CPU/request: gateway {row['gw_ms']:.2f} ms, "
                f"worker {row['wk_ms']:.2f} ms; kafka {row['kafka_ms']:.2f}, postgres {row['postgres_ms']:.2f}, "
                f"redis {row['redis_ms']:.2f} ms  busy {row['busy']}%  load {row['load']:.2f}",
                flush=True,
            )
    for name, rows in results.items():
        keys = ("rps", "p50", "p99", "gw_ms", "wk_ms", "kafka_ms", "postgres_ms", "redis_ms")
        med = {k: statistics.median(r[k] for r in rows) for k in keys}
        print(
            f"c={args.concurrency} median {name:<10} {med['rps']:7.1f} req/s  p50 {med['p50']:6.1f}  "
            f"p99 {med['p99']:6.1f} ms  CPU/request: gateway {med['gw_ms']:.2f} ms, worker {med['wk_ms']:.2f} ms, "
            f"kafka {med['kafka_ms']:.2f}, postgres {med['postgres_ms']:.2f}, redis {med['redis_ms']:.2f} ms, "
            f"errors {sum(r['errors'] for r in rows)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
