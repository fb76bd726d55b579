"""Benchmark: conversion throughput through the worker(s), Kafka request in -> audit row committed.

On an isolated schema / topic prefix / Redis key prefix it creates the CES topics with `--partitions`
partitions, starts `--workers` worker processes in one consumer group, seeds five fresh EUR rates, then
produces `--requests` conversion requests over mixed pairs (direct EUR->X, inverse X->EUR, cross X->Y)
from one aiokafka producer, as an outside service would. It polls `conversion_audit` every 0.5 s until
every request is decided and prints:

- requests/s produced (first send -> last delivery acknowledged);
- end-to-end conversions/s (first request sent -> last audit row committed, to the 0.5 s poll);
- the steady rate between 10% and 90% of rows committed (less affected by start-up), and the best
  rows/s over any 5 s window;
- each worker's average CPU over the run, the PostgreSQL server's (postmaster and its children), this
  process's own (the load generator shares the machine) and the whole machine's.

Workers run with no live rate provider, so each logs one expected "rate fetch from ecb failed" error.
Needs the stack (`cesdev stack up`); workers' output goes to the log files it prints.

    python benchmarks/conversions.py [--requests 100000] [--workers 1] [--partitions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from isolation import Isolation, free_ports  # benchmarks/ sibling
from sqlalchemy import Engine, create_engine, text

from ces.adapters.kafka.connection import kafka_kwargs
from ces.events.base import utc_now
from ces.events.topics import CONVERSION_REQUESTS, RATES_FETCHED
from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote
from cesdev.stack.secrets import export_role_env

RATES = {"USD": "1.0892", "JPY": "161.87", "GBP": "0.85713", "KWD": "0.33421", "NGN": "1745.1234"}
MINOR = {"EUR": 2, "USD": 2, "JPY": 0, "GBP": 2, "KWD": 3, "NGN": 2}
# Any of: the line `ces worker` prints once started; Faust's at INFO level; Faust's spinner's end otherwise.
READY_MARKERS = ("ces worker ready", "[^Worker]: Ready", " OK ^")
POLL_SECONDS = 0.5
DEADLINE_SECONDS = 15 * 60
WINDOW_SECONDS = 5.0
PRODUCE_CHUNK = 10_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
COUNTS = text("SELECT (SELECT count(*) FROM conversion_audit), (SELECT count(*) FROM conversion_rejection)")


# --- CPU accounting from /proc ---------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; fields[0] is the state (field 3)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def postgres_cpu(postmaster: int | None) -> dict[int, float]:
    if postmaster is None:
        return {}
    usage = {pid: process_cpu_seconds(pid) for pid in [postmaster, *children(postmaster)]}
    return {pid: cpu for pid, cpu in usage.items() if cpu is not None}


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all cores, from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user/nice
    return total - idle, total


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSnapshot:
    at: float
    workers: list[float | None]
    postgres: dict[int, float]
    self_cpu: float
    machine: tuple[int, int]

    @classmethod
    def take(cls, worker_pids: list[int], postmaster: int | None) -> CpuSnapshot:
        return cls(
            at=time.monotonic(),
            workers=[process_cpu_seconds(pid) for pid in worker_pids],
            postgres=postgres_cpu(postmaster),
            self_cpu=self_cpu_seconds(),
            machine=machine_busy_jiffies(),
        )


def report_cpu(before: CpuSnapshot, after: CpuSnapshot) -> None:
    wall = after.at - before.at
    cores = os.cpu_count() or 1

    def pct(seconds: float) -> str:
        return f"{100 * seconds / wall:5.1f}%"

    print(f"CPU over the run ({wall:.1f}s; 100% = one core, {cores} cores):")
    for i, (start, end) in enumerate(zip(before.workers, after.workers, strict=True)):
        shown = pct(end - start) if start is not None and end is not None else "n/a (exited)"
        print(f"  worker {i}: {shown}")
    if after.postgres:
        # Backends started during the run count in full; ones that ended during it are missed.
        pg = sum(cpu - before.postgres.get(pid, 0.0) for pid, cpu in after.postgres.items())
        print(f"  postgresql server ({len(after.postgres)} processes): {pct(pg)}")
    else:
        print("  postgresql server: n/a (not a local process)")
    print(f"  this benchmark (producer + poller): {pct(after.self_cpu - before.self_cpu)}")
    busy = after.machine[0] - before.machine[0]
    total = max(after.machine[1] - before.machine[1], 1)
    print(f"  whole machine: {100 * busy / total:.0f}% busy")


def find_postmaster(engine: Engine) -> int | None:
    """The PostgreSQL server's main process, if it runs on this machine: the parent of our backend."""
    with engine.connect() as conn:
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    try:
        status = Path(f"/proc/{backend}/status").read_text()
    except OSError:
        return None
    ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
    return ppid if ppid > 1 else None


# --- workers ---------------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(marker in self.output() for marker in READY_MARKERS):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready within {timeout:.0f}s; see {self.log}")

    def terminate(self, timeout: float = 60.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_worker(env: dict[str, str], log: Path) -> WorkerProcess:
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ces", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
    return WorkerProcess(proc, log)


async def wait_for_group(bootstrap: str, group_id: str, members: int, timeout: float = 120.0) -> None:
    """Until the consumer group is Stable with `members` members: no rebalance left to disturb the run."""
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    state, count = "", 0
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for response in await admin.describe_consumer_groups([group_id]):
                for group in response.groups:  # raw DescribeGroups v0 tuples: (error, id, state, ..., members)
                    state, count = group[2], len(group[5])
            if state == "Stable" and count == members:
                return
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise RuntimeError(f"group {group_id} not stable with {members} members within {timeout:.0f}s: {state}/{count}")


# --- load ------------------------------------------------------------------------------------------------


def seed_rates(bootstrap: str, prefix: str, engine: Engine) -> None:
    """Publish fresh EUR rates (an hour old) and wait until the workers have projected them."""
    published = utc_now() - timedelta(hours=1)
    events = quote_events(
        ProviderQuote("ecb", "EUR", published, {code: Decimal(value) for code, value in RATES.items()}),
        uuid.uuid4(),
        published,
    )

    async def publish() -> None:
        producer = AIOKafkaProducer(**kafka_kwargs(bootstrap))
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(prefix + RATES_FETCHED.name, event.to_json(), key=event.key())
        finally:
            await producer.stop()

    asyncio.run(publish())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one() == len(RATES):
                return
        time.sleep(0.2)
    raise RuntimeError("seeded rates not projected within 90s")


def build_requests(n: int, seed: int = 7) -> tuple[list[tuple[bytes, bytes]], dict[str, int]]:
    rng = random.Random(seed)
    codes = ["EUR", *RATES]
    mix = {"direct": 0, "inverse": 0, "cross": 0}
    messages = []
    for _ in range(n):
        base, target = rng.sample(codes, 2)
        mix["direct" if base == "EUR" else "inverse" if target == "EUR" else "cross"] += 1
        amount = Decimal(rng.randint(1, 10**7)).scaleb(-MINOR[base])
        rid = str(uuid.uuid4())
        payload = {"request_id": rid, "base_currency": base, "target_currency": target, "amount": str(amount)}
        messages.append((rid.encode(), json.dumps(payload).encode()))
    return messages, mix


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], started: threading.Event) -> float:
    """Send everything (futures gathered per chunk, not per message); set `started` at the first send.

    Returns the seconds from the first send to the last delivery acknowledged."""
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        t0 = time.monotonic()
        started.set()
        for i in range(0, len(messages), PRODUCE_CHUNK):
            futures = [await producer.send(topic, value, key=key) for key, value in messages[i : i + PRODUCE_CHUNK]]
            await asyncio.gather(*futures)
        return time.monotonic() - t0
    finally:
        await producer.stop()


@dataclass
class Progress:
    """(monotonic time, audit rows, rejections) sampled every POLL_SECONDS by a background thread."""

    engine: Engine
    target: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self, started: threading.Event) -> None:
        try:
            started.wait()
            deadline = time.monotonic() + DEADLINE_SECONDS
            while not self.stop.is_set() and time.monotonic() < deadline:
                at = time.monotonic()  # the count's snapshot is taken at (or just after) this moment
                with self.engine.connect() as conn:
                    audits, rejections = conn.execute(COUNTS).one()
                self.samples.append((at, audits, rejections))
                if audits + rejections >= self.target:
                    return
                self.stop.wait(max(0.0, at + POLL_SECONDS - time.monotonic()))
        except BaseException as exc:  # surfaced by the main thread
            self.error = exc


def crossing(samples: list[tuple[float, int]], level: float) -> float | None:
    """When the count reached `level`, interpolated linearly between the two samples around it."""
    prev_t, prev_c = samples[0]
    for t, c in samples:
        if c >= level:
            if c == prev_c:
                return t
            return prev_t + (t - prev_t) * (level - prev_c) / (c - prev_c)
        prev_t, prev_c = t, c
    return None


def best_window(samples: list[tuple[float, int]], seconds: float) -> tuple[float, float] | None:
    """Highest rows/s between two samples at least `seconds` apart (the nearest such pair); and its start."""
    best: tuple[float, float] | None = None
    j = 0
    for i, (t_i, c_i) in enumerate(samples):
        j = max(j, i + 1)
        while j < len(samples) and samples[j][0] - t_i < seconds:
            j += 1
        if j == len(samples):
            break
        t_j, c_j = samples[j]
        rate = (c_j - c_i) / (t_j - t_i)
        if best is None or rate > best[0]:
            best = (rate, t_i)
    return best


# --- main ------------------------------------------------------------------------------------------------


def main() -> None:
    export_role_env("admin")  # the local stack's credentials, unless CES_* are set
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    n: int = args.requests

    run = Isolation.new()
    settings = run.settings
    bootstrap = settings.kafka_bootstrap
    app_id = run.app_id
    prefix = run.topic_prefix
    log_dir = Path(tempfile.mkdtemp(prefix=f"ces-bench-{run.run}-"))
    print(f"run {run.run}: {n} requests, {args.workers} worker(s), {args.partitions} partitions; schema {run.schema}")

    workers: list[WorkerProcess] = []
    engine: Engine | None = None
    try:
        run.create(args.partitions)
        engine = create_engine(run.database_url)
        base_env = run.env(CES_TOPIC_PARTITIONS=str(args.partitions))
        for i, port in enumerate(free_ports(args.workers)):
            log = log_dir / f"worker-{i}.log"
            workers.append(start_worker({**base_env, "CES_WORKER_WEB_PORT": str(port)}, log))
            print(f"worker {i}: pid {workers[-1].proc.pid}, web port {port}, log {log}")
        for worker in workers:
            worker.wait_ready()
        asyncio.run(wait_for_group(bootstrap, f"{app_id}-conversions", args.workers))
        seed_rates(bootstrap, prefix, engine)
        print(f"workers ready, {len(RATES)} rates projected")

        messages, mix = build_requests(n)
        print("request mix: " + ", ".join(f"{kind} {count}" for kind, count in mix.items()))
        postmaster = find_postmaster(engine)
        progress = Progress(engine, n)
        started = threading.Event()
        poller = threading.Thread(target=progress.run, args=(started,), daemon=True)
        poller.start()

        print(f"sending from {time.strftime('%H:%M:%S')} (to match against the worker logs)")
        cpu_before = CpuSnapshot.take([w.proc.pid for w in workers], postmaster)
        t0 = cpu_before.at
        produce_seconds = asyncio.run(produce(bootstrap, prefix + CONVERSION_REQUESTS.name, messages, started))
        print(f"produced: {n} requests in {produce_seconds:.2f}s, {n / produce_seconds:,.0f} requests/s")
        while poller.is_alive():
            poller.join(1.0)
            for i, worker in enumerate(workers):
                if worker.proc.poll() is not None:
                    raise RuntimeError(f"worker {i} exited with {worker.proc.returncode}; see {worker.log}")
        if progress.error is not None:
            raise progress.error
        cpu_after = CpuSnapshot.take([w.proc.pid for w in workers], postmaster)

        samples = [(t - t0, audits) for t, audits, _ in progress.samples]
        last_t, audits = samples[-1]
        rejections = progress.samples[-1][2]
        print(f"audit rows committed: {audits} of {n}" + (f" ({rejections} REJECTED)" if rejections else ""))
        if audits + rejections < n:
            print(f"DEADLINE: not all requests decided within {DEADLINE_SECONDS}s")
        print(
            f"end to end (first request sent -> last audit row committed): {last_t:.1f}s, "
            f"{audits / last_t:,.0f} conversions/s"
        )
        t10, t90 = crossing(samples, 0.1 * n), crossing(samples, 0.9 * n)
        if t10 is not None and t90 is not None and t90 > t10:
            steady = 0.8 * n / (t90 - t10)
            print(f"steady (10% -> 90% committed, at {t10:.1f}s -> {t90:.1f}s): {steady:,.0f} conversions/s")
        window = best_window(samples, WINDOW_SECONDS)
        if window is not None:
            print(f"best {WINDOW_SECONDS:.0f}s window (from {window[1]:.1f}s): {window[0]:,.0f} rows/s")
        report_cpu(cpu_before, cpu_after)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        for worker in workers:
            worker.terminate()
        errors = [w.log for w in workers if "Traceback" in w.output()]
        if errors:
            print("tracebacks in worker logs: " + ", ".join(map(str, errors)))
        if engine is not None:
            engine.dispose()
        run.cleanup()


if __name__ == "__main__":
    main()
