"""Benchmark helper: an isolated CES (worker(s) + gateway) on the shared stack, for HTTP load tests.

On a fresh schema / topic prefix / Redis key prefix / app id it migrates, creates the topics, starts
`--workers` workers and a gateway (`--processes` processes) on `--port`, seeds five fresh EUR rates,
mints an API key with the convert scope and writes it to `--key-file`, warms the round trip up with
`--warm` seconds of closed-loop conversions, then prints `ready`. It serves until interrupted
(SIGINT/SIGTERM), then stops its processes and drops everything it created. Every `CES_*` variable of its
own environment reaches the processes (e.g. `CES_EVENT_LOOP=asyncio`).

Why the warm-up: right after a broker start the JVM is still compiling its hot paths, and the broker spent
0.51 ms of CPU per conversion in the first round after a start against 0.07 ms four rounds later (c=32:
1,219 against 1,801 requests/s, docs/http.md, "Tenth session"); 2 s of a benchmark's own warm-up do not
cover it. A port
that already answers is refused: a second serve on it would mint its key in its own schema and report
ready on the first one's gateway.

    python benchmarks/serve_isolated.py --port 18080 --key-file /tmp/key [--processes 1] [--workers 1]
    python benchmarks/gateway.py --peer --url http://127.0.0.1:18080 --header "Authorization: Bearer $(cat /tmp/key)"
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conversions import RATES, seed_rates, start_worker, wait_for_group
from isolation import Isolation, free_ports

from ces.adapters.postgres.api_keys import PostgresApiKeyStore
from ces.services.api_keys import create_key, parse_scopes
from cesdev.stack.secrets import export_role_env


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready within {timeout:.0f}s")


WARM_BODY = {"base_currency": "EUR", "target_currency": "USD", "amount": "100.00"}


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def warm(url: str, key: str, seconds: float, concurrency: int = 16) -> int:
    """Closed-loop `POST /v1/conversions` for `seconds`, each with a fresh request id; the number answered 201."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    deadline = time.monotonic() + seconds
    done = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            body = {**WARM_BODY, "request_id": str(uuid.uuid4())}
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                done += response.status == 201

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return done


def main() -> None:
    export_role_env("admin")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--warm", type=float, default=20.0, help="seconds of warm-up load before `ready` (0: none)")
    args = parser.parse_args()
    if port_taken(args.port):
        raise SystemExit(f"port {args.port} already answers: another serve (or something else) holds it")

    run = Isolation.new()
    settings = run.settings
    log_dir = Path(tempfile.mkdtemp(prefix=f"ces-serve-{run.run}-"))
    print(f"run {run.run}: schema {run.schema}, logs {log_dir}", flush=True)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        run.create(args.partitions)
        env = run.env(
            CES_TOPIC_PARTITIONS=str(args.partitions),
            CES_REQUEST_SIGNING_KEY=secrets.token_hex(32),
            CES_RATE_LIMIT_PER_SECOND="100000",
            CES_RATE_LIMIT_BURST="100000",
            CES_GATEWAY_PORT=str(args.port),
        )
        workers = []
        for i, port in enumerate(free_ports(args.workers)):
            workers.append(start_worker({**env, "CES_WORKER_WEB_PORT": str(port)}, log_dir / f"worker-{i}.log"))
            procs.append(workers[-1].proc)
        for worker in workers:
            worker.wait_ready()
        asyncio.run(wait_for_group(settings.kafka_bootstrap, f"{run.app_id}-conversions", args.workers))
        seed_rates(settings.kafka_bootstrap, run.topic_prefix, create_engine(run.database_url))
        with open(log_dir / "gateway.log", "wb") as out:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "ces", "gateway", "--processes", str(args.processes)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(gateway)
        wait_http(f"http://127.0.0.1:{args.port}/readyz")
        if gateway.poll() is not None:
            raise RuntimeError(f"the gateway exited ({gateway.returncode}); see {log_dir / 'gateway.log'}")
        owner = create_engine(run.owner_url)
        _, secret = create_key(PostgresApiKeyStore(owner), run.app_id, parse_scopes("convert"))
        owner.dispose()
        if args.warm > 0:
            answered = asyncio.run(warm(f"http://127.0.0.1:{args.port}/v1/conversions", secret, args.warm))
            print(f"warmed up: {answered} conversions in {args.warm:g}s", flush=True)
        args.key_file.write_text(secret)
        pids = " ".join(str(p.pid) for p in procs)
        print(f"ready: {len(RATES)} rates, gateway on {args.port} (pid {gateway.pid}), pids {pids}", flush=True)
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.5)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        run.cleanup()
        print("stopped and cleaned up", flush=True)


if __name__ == "__main__":
    main()
