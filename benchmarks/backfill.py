"""Benchmark: backfill the full ECB history, end to end.

Starts a worker on an isolated schema / topic prefix / key prefix, runs `ces rates backfill` over the whole
bundled history (every day since 1999, every currency) while polling PostgreSQL, and prints:
- events produced and events/s (as `ces rates backfill` reports them),
- first event produced (the earliest broker timestamp on the topic) -> last row committed, in seconds,
- projection rows/s, first row -> last row committed (the rows' `recorded_at`, then the poll that saw the last),
- CPU seconds of the producer process and of the worker (from its start of the backfill to the last row),
- the load averages before and after (the machine is shared: read wall numbers next to them),
- the topic's size on the broker's disk (set `CES_KAFKA_COMPRESSION` to compare codecs).
`--backlog` produces the whole history first with no worker consuming, then starts the worker and times
the projection alone (first row -> last row committed, and the worker's CPU from the first row it wrote):
while the two run together the projection's rows/s is bounded by the producer's events/s.
`--workers N` starts N worker processes in one consumer group (the CPU figures are their sums).
`--py-spy OUT` records a sampling profile of the (first) worker from its first row to its last (idle samples and thread
ids kept: the event loop's waits show); `--py-spy-producer OUT`
one of `ces rates backfill` from its start, idle (waiting) samples included (the producer's CPU then counts
py-spy's too). `ces rates backfill` prints its own CPU split: start-up (imports) and producing.
Needs the stack (`cesdev stack up`); run it under `flock /work/notes/bench.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from isolation import Isolation, free_ports  # benchmarks/ sibling
from sqlalchemy import Engine, create_engine, text

from ces.adapters.kafka.connection import kafka_kwargs
from ces.adapters.providers.ecb_history import load_history
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _local_ports(pid: int) -> set[int]:
    """The local TCP ports of `pid`'s sockets (/proc/<pid>/fd against /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _backends_cpu(pid: int) -> float:
    """CPU seconds of the PostgreSQL backends serving `pid` (their `postgres: user db host(port)` titles name
    the client's port); 0 when they cannot be read (another user's processes)."""
    ports = _local_ports(pid)
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().decode(errors="replace")
            if title.startswith("postgres: ") and "(" in title:
                port = int(title.split("(", 1)[1].split(")", 1)[0])
                if port in ports:
                    total += _cpu_seconds(int(proc.name))
        except (OSError, ValueError):
            continue
    return total


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


async def _first_produced(settings: Settings, topic: str) -> float | None:
    """The earliest record timestamp (producer CreateTime, epoch seconds) on `topic`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = range(settings.topic_partitions)  # how `ensure_all_topics` created it
        # The offset of the first record at or after time 0 comes with that record's timestamp.
        found = await consumer.offsets_for_times({TopicPartition(topic, p): 0 for p in partitions})
        stamps = [o.timestamp / 1000 for o in found.values() if o is not None]
        return min(stamps) if stamps else None
    finally:
        await consumer.stop()


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one())


def _spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    """A sampling profile of `pid` until it is interrupted (`py-spy record -f raw`, folded stacks), idle
    samples and thread ids included: where the event loop waits is what the wall time of a backlog is made of."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    cmd = [py_spy, "record", "-r", "200", "-f", "raw", "--idle", "--threads", "--pid", str(pid), "-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backlog",
        action="store_true",
        help="produce the whole history first with no worker, then start one: times the projection alone",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (one consumer group: the topic's partitions are shared among them)",
    )
    parser.add_argument("--py-spy", metavar="OUT", help="profile the worker from its first row to its last into OUT")
    parser.add_argument(
        "--py-spy-producer", metavar="OUT", help="profile `ces rates backfill` (idle samples included) into OUT"
    )
    args = parser.parse_args()
    export_role_env("admin")  # the local stack's credentials, unless CES_* are set
    run = Isolation.new()
    settings = run.settings
    run.create()
    prefix = run.topic_prefix
    envs = [run.env(CES_WORKER_WEB_PORT=str(port)) for port in free_ports(args.workers)]
    env = envs[0]
    history = load_history()
    expected = sum(len(r) for r in history.rates.values())
    print(f"history: {len(history.days)} days, {expected} rates")
    engine = create_engine(run.database_url)
    workers: list[subprocess.Popen[bytes]] = []
    spy: subprocess.Popen[bytes] | None = None

    def start_workers() -> list[subprocess.Popen[bytes]]:
        cmd = [sys.executable, "-m", "ces", "worker"]
        return [subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for e in envs]

    def workers_cpu() -> float:
        return sum(_cpu_seconds(w.pid) for w in workers)

    try:
        if not args.backlog:
            workers = start_workers()
            time.sleep(8)  # let the worker join its groups first: its start-up is not the backfill's cost
        print(f"before: {_load()}")
        worker_cpu0 = workers_cpu()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        result: dict[str, subprocess.CompletedProcess[str]] = {}

        def backfill() -> None:
            cmd = [sys.executable, "-m", "ces", "rates", "backfill", "--start", "1999-01-01"]
            if args.py_spy_producer:
                py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                cmd = [py_spy, "record", "-r", "200", "-f", "raw", "--idle", "-o", args.py_spy_producer, "--", *cmd]
            result["out"] = subprocess.run(
                cmd,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )

        started = time.time()
        producing = threading.Thread(target=backfill)
        producing.start()
        if args.backlog:
            producing.join()
            produced = time.time()
            print(f"produced (no worker): {produced - started:.1f}s, {_load()}")
            workers = start_workers()
        assert workers
        count = 0
        first_seen_cpu: float | None = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            count = _count(engine)
            if count and first_seen_cpu is None:
                first_seen_cpu = workers_cpu()
                if args.py_spy:
                    spy = _spy(workers[0].pid, args.py_spy)
            if count >= expected:
                break
            time.sleep(0.1)
        done = time.time()
        worker_cpu_end = workers_cpu()
        backends_cpu = sum(_backends_cpu(w.pid) for w in workers)
        worker_cpu = worker_cpu_end - worker_cpu0
        producing.join()
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # before py-spy, also a child, is waited for
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        producer_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
        print(f"after: {_load()}")
        print(result["out"].stdout.strip())
        with engine.connect() as conn:
            first_row: datetime | None = conn.execute(text("SELECT min(recorded_at) FROM exchange_rate")).scalar_one()
        first_produced = asyncio.run(_first_produced(settings, prefix + "rates-fetched"))
        print(f"rows projected: {count} of {expected}")
        if not args.backlog:
            print(f"backfill process start -> last row committed: {done - started:.1f}s")
            if first_produced is not None:
                print(f"first event produced -> last row committed: {done - first_produced:.1f}s")
        if first_row is not None:
            seconds = done - first_row.timestamp()
            what = "backlog, first row -> last row committed" if args.backlog else "first row -> last row committed"
            print(f"projection ({what}): {seconds:.1f}s, {count / seconds:,.0f} rows/s")
        if args.backlog:
            since_first = worker_cpu_end - (first_seen_cpu or 0.0)
            print(
                f"CPU: producer (ces rates backfill) {producer_cpu:.1f}s, worker {worker_cpu:.1f}s from its start, "
                f"{since_first:.1f}s from the first row seen ({since_first / max(count, 1) * 1e6:.0f} us/row)"
            )
        else:
            print(
                f"CPU: producer (ces rates backfill) {producer_cpu:.1f}s, worker {worker_cpu:.1f}s "
                f"({worker_cpu / max(count, 1) * 1e6:.0f} us/row)"
            )
        # Its backends were started with the worker: in --backlog mode this is all the projection's database work.
        print(f"CPU: PostgreSQL backends of the worker {backends_cpu:.1f}s (its pool's, since they connected)")
        data = Path(settings.stack_dir) / "kafka" / "data"  # the local stack's broker segments
        disk = sum(f.stat().st_size for f in data.glob(f"{prefix}rates-fetched-*/*.log"))
        codec = env.get("CES_KAFKA_COMPRESSION", settings.kafka_compression)
        print(f"on disk (CES_KAFKA_COMPRESSION={codec}): {disk:,} B")
    finally:
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)
        engine.dispose()
        run.cleanup()


if __name__ == "__main__":
    main()
