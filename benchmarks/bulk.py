"""Benchmark: bulk conversions, items/s of `POST /v1/conversions/batch` and of `ces convert --file`.

Brings up a private CES on the local stack (its own schema, topic prefix, app id and Redis prefix; one
`ces worker` and one `ces gateway` as their own principals; fresh EUR rates), then measures:

    http   `--batches` batches of `--batch` items (default 3 x 10,000), one after the other, each a new
           set of request ids, then the first batch again (every item a replay): items/s per batch
    file   `ces convert` on a `--lines`-line CSV (default 100,000; no request_id column, so the ids are
           derived), as the outside producer, then the same file again (a rerun): items/s per run

and prints the machine's busy share and load average during each, since the cores are shared. The gateway
gets a rate limit high enough not to interfere. Everything it created in PostgreSQL is dropped at the end.

    python benchmarks/bulk.py [--batch 10000] [--batches 3] [--lines 100000] [--skip-http] [--skip-file]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from secrets import token_hex
from typing import Any

import aiohttp
from isolation import in_schema  # benchmarks/ sibling
from sqlalchemy import create_engine, text

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.postgres import migrate
from ces.adapters.postgres.api_keys import PostgresApiKeyStore
from ces.bootstrap import build_producer
from ces.events.base import utc_now
from ces.services.api_keys import Scope, create_key
from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote
from ces.settings import Settings
from cesdev.stack import acls, secrets

RATES = {"USD": "1.0892", "JPY": "161.87", "GBP": "0.85713", "CHF": "0.9312", "KWD": "0.33421"}
PAIRS = [("EUR", "USD"), ("USD", "JPY"), ("GBP", "CHF"), ("CHF", "EUR"), ("KWD", "GBP")]


def machine_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# The CES processes this run started, by name: their CPU is reported per measured step.
WATCHED: dict[str, int] = {}


class Measured:
    def __enter__(self) -> Measured:
        self.cpu = {name: cpu_seconds(pid) for name, pid in WATCHED.items()}
        self.cpu["ces convert"] = children_cpu()
        self.started, self.ticks = time.perf_counter(), machine_ticks()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.started
        busy, total = machine_ticks()
        self.busy = (busy - self.ticks[0]) / max(1, total - self.ticks[1])
        self.load = os.getloadavg()[0]
        now = {name: cpu_seconds(pid) for name, pid in WATCHED.items()}
        now["ces convert"] = children_cpu()
        self.used = {name: now[name] - self.cpu[name] for name in now if now[name] - self.cpu[name] > 0.05}

    def line(self, name: str, items: int, extra: str = "") -> str:
        cpu = ", ".join(f"{k} {v / self.wall:.0%} ({v / items * 1000:.2f} ms/item)" for k, v in self.used.items())
        return (
            f"{name:<34} {items:>7} items  {self.wall:7.2f} s  {items / self.wall:8.0f} items/s  "
            f"machine busy {self.busy:.0%}  load {self.load:.1f}  CPU of a core: {cpu}{extra}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "ces", *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(log: Path, marker: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{log} ended:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    raise SystemExit(f"{marker!r} not in {log} after {timeout}s")


async def seed(settings: Settings, prefix: str) -> None:
    published = utc_now() - timedelta(hours=1)
    quote = ProviderQuote("ecb", "EUR", published, {c: Decimal(v) for c, v in RATES.items()})
    producer = build_producer(settings)
    await producer.start()
    try:
        for event in quote_events(quote, uuid.uuid4(), published):
            await (await producer.send(prefix + event.TOPIC, event.to_json(), key=event.key()))
    finally:
        await producer.stop()


def item(i: int) -> dict[str, str]:
    base, target = PAIRS[i % len(PAIRS)]
    return {
        "base_currency": base,
        "target_currency": target,
        "amount": f"{i % 997 + 1}.00",
        "request_id": str(uuid.uuid4()),
    }


async def http_bench(url: str, key: str, batch: int, batches: int) -> None:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout) as session:
        sent: list[dict[str, Any]] = []
        for n in range(batches + 1):
            body = sent[0] if n == batches else {"items": [item(i) for i in range(batch)]}
            sent.append(body)
            raw = json.dumps(body).encode()
            with Measured() as m:
                async with session.post(
                    "/v1/conversions/batch", data=raw, headers={"Content-Type": "application/json"}
                ) as response:
                    answer = await response.json(content_type=None)
            if response.status != 200:
                raise SystemExit(f"batch answered {response.status}: {str(answer)[:500]}")
            name = "http batch (replay of batch 1)" if n == batches else f"http batch {n + 1}"
            print(m.line(name, batch, f"  {len(raw) / 1e6:.1f} MB body  counts {answer['counts']}"), flush=True)


def file_bench(env: dict[str, str], lines: int, workdir: Path) -> None:
    source = workdir / "requests.csv"
    with source.open("w") as out:
        out.write("base_currency,target_currency,amount\n")
        for i in range(lines):
            base, target = PAIRS[i % len(PAIRS)]
            out.write(f"{base},{target},{i % 997 + 1}.00\n")
    producer_env = {**env, **secrets.role_env(secrets.load(Settings()), "producer")}  # type: ignore[arg-type]
    for run in ("ces convert (new)", "ces convert (rerun)"):
        out_file = workdir / "results.ndjson"
        with Measured() as m:
            done = subprocess.run(
                [sys.executable, "-m", "ces", "convert", "--file", str(source), "--out", str(out_file)],
                env=producer_env,
                capture_output=True,
                text=True,
                check=False,
            )
        summary = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        print(m.line(run, lines, f"  exit {done.returncode}  [{summary}]"), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-file", action="store_true")
    args = parser.parse_args()

    secrets.export_role_env("admin")
    admin = Settings()
    stack = secrets.load(admin)
    unique = uuid.uuid4().hex[:8]
    schema, prefix, app_id = f"bench_{unique}", f"bench-{unique}-", f"bench-{unique}"
    print(f"bulk benchmark {unique}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start", flush=True)
    migrate.upgrade(admin.migration_database_dsn, schema=schema)
    owner = create_engine(in_schema(admin.migration_database_dsn, schema))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        asyncio.run(
            ensure_topics(KafkaConnection.from_settings(admin), partitions=admin.topic_partitions, prefix=prefix)
        )
        asyncio.run(acls.grant_ces(KafkaConnection.from_settings(admin), prefix=prefix, app_id=app_id))
        port = free_port()
        env = {
            **os.environ,
            "CES_APP_ID": app_id,
            "CES_TOPIC_PREFIX": prefix,
            "CES_REDIS_KEY_PREFIX": f"{app_id}:",
            "CES_DATABASE_URL": in_schema(admin.database_url, schema),
            "CES_MIGRATION_DATABASE_URL": in_schema(admin.migration_database_url, schema),
            "CES_PROVIDER_URL": "http://127.0.0.1:9",
            "CES_FETCH_MAX_ATTEMPTS": "1",
            "CES_RATE_LIMIT_PER_SECOND": "1000000",
            "CES_RATE_LIMIT_BURST": "1000000",
            "CES_GATEWAY_PORT": str(port),
            # The gateway signs its requests and the worker checks them: both get this run's own key.
            "CES_REQUEST_SIGNING_KEY": token_hex(32),
        }
        workdir = Path(tempfile.mkdtemp(prefix="ces-bulk-"))
        assert stack is not None, "the local stack's secrets are needed (CES_STACK_DIR)"
        worker_env = {**env, **secrets.role_env(stack, "worker"), "CES_WORKER_WEB_PORT": str(free_port())}
        procs.append(start(["worker"], worker_env, workdir / "worker.log"))
        WATCHED["worker"] = procs[-1].pid
        wait_for(workdir / "worker.log", "ces worker ready", procs[-1])
        asyncio.run(seed(admin, prefix))
        with owner.connect() as conn:
            deadline = time.monotonic() + 60
            while conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one() < len(RATES):
                if time.monotonic() > deadline:
                    raise SystemExit("rates not projected within 60 s")
                time.sleep(0.2)
                conn.rollback()
        if not args.skip_http:
            procs.append(start(["gateway"], {**env, **secrets.role_env(stack, "gateway")}, workdir / "gateway.log"))
            wait_for(workdir / "gateway.log", "Running on", procs[-1])
            WATCHED["gateway"] = procs[-1].pid
            _, key = create_key(PostgresApiKeyStore(owner), f"bench-{unique}", frozenset({Scope.CONVERT}))
            asyncio.run(http_bench(f"http://127.0.0.1:{port}", key, args.batch, args.batches))
        if not args.skip_file:
            file_bench(env, args.lines, workdir)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=60)
        owner.dispose()
        with create_engine(admin.migration_database_dsn).begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
