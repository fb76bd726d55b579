"""Benchmark: how long conversions stop after `kill -9` of the worker and its immediate restart.

On an isolated schema / topic prefix it starts one worker, seeds rates, then `--runs` times: sends a
probe request every 100 ms from an outside producer, kills the worker with SIGKILL, restarts it at
once (as a supervisor would) and measures the time from the restart to the first probe decided
(committed in PostgreSQL), and from the kill. What bounds it is the consumer group: the dead member
keeps its partitions until its session (`CES_CONSUMER_SESSION_TIMEOUT_MS`) expires.

    python benchmarks/recovery.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from conversions import seed_rates, start_worker, wait_for_group  # benchmarks/ sibling
from isolation import Isolation, free_ports
from sqlalchemy import create_engine, text

from ces.adapters.kafka.connection import kafka_kwargs
from ces.events.topics import CONVERSION_REQUESTS
from cesdev.stack.secrets import export_role_env

DECIDED = text("SELECT count(*) FROM conversion_request WHERE request_id = ANY(CAST(:ids AS uuid[]))")


class Prober:
    """Sends one conversion request every `every` seconds until stopped; remembers when each was sent."""

    def __init__(self, bootstrap: str, topic: str, every: float = 0.1) -> None:
        self.bootstrap, self.topic, self.every = bootstrap, topic, every
        self.sent: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        producer = AIOKafkaProducer(**kafka_kwargs(self.bootstrap), linger_ms=0)
        await producer.start()
        try:
            while not self.stop.is_set():
                rid = str(uuid.uuid4())
                body = {"request_id": rid, "base_currency": "USD", "target_currency": "JPY", "amount": "1.00"}
                await producer.send_and_wait(self.topic, json.dumps(body).encode(), key=rid.encode())
                self.sent[rid] = time.monotonic()
                await asyncio.sleep(self.every)
        finally:
            await producer.stop()


def main() -> None:
    export_role_env("admin")  # the local stack's credentials, unless CES_* are set
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    run = Isolation.new()
    settings = run.settings
    log_dir = Path(tempfile.mkdtemp(prefix=f"ces-recovery-{run.run}-"))
    env = run.env()
    run.create()
    engine = create_engine(run.database_url)
    app_id, prefix = run.app_id, run.topic_prefix
    session = int(os.environ.get("CES_CONSUMER_SESSION_TIMEOUT_MS", settings.consumer_session_timeout_ms))
    print(f"run {run.run}: session timeout {session} ms; logs in {log_dir}")
    worker = start_worker({**env, "CES_WORKER_WEB_PORT": str(free_ports(1)[0])}, log_dir / "worker-0.log")
    results: list[tuple[float, float]] = []
    try:
        worker.wait_ready()
        asyncio.run(wait_for_group(settings.kafka_bootstrap, f"{app_id}-conversions", 1))
        seed_rates(settings.kafka_bootstrap, prefix, engine)
        for i in range(1, args.runs + 1):
            prober = Prober(settings.kafka_bootstrap, prefix + CONVERSION_REQUESTS.name)
            thread = threading.Thread(target=prober.run, daemon=True)
            killed = time.monotonic()
            worker.proc.kill()
            worker.proc.wait()
            restarted = time.monotonic()
            worker = start_worker({**env, "CES_WORKER_WEB_PORT": str(free_ports(1)[0])}, log_dir / f"worker-{i}.log")
            thread.start()
            first = None
            deadline = restarted + 180
            while first is None and time.monotonic() < deadline:
                ids = list(prober.sent)
                if ids:
                    with engine.connect() as conn:
                        decided = conn.execute(
                            text(
                                "SELECT count(*) FROM conversion_request WHERE request_id = ANY(CAST(:ids AS uuid[]))"
                            ),
                            {"ids": ids},
                        ).scalar_one()
                    if decided:
                        first = time.monotonic()
                        break
                time.sleep(0.1)
            prober.stop.set()
            thread.join()
            if first is None:
                raise RuntimeError(f"run {i}: no conversion within 180 s of the restart; see {worker.log}")
            results.append((first - restarted, first - killed))
            print(
                f"run {i}: first decision {first - restarted:.1f}s after the restart ({first - killed:.1f}s after kill)"
            )
            asyncio.run(wait_for_group(settings.kafka_bootstrap, f"{app_id}-conversions", 1))
        after_restart = sorted(r for r, _ in results)
        print(
            f"recovery after restart over {len(results)} runs: min {after_restart[0]:.1f}s, "
            f"median {after_restart[len(after_restart) // 2]:.1f}s, max {after_restart[-1]:.1f}s"
        )
    finally:
        worker.terminate()
        engine.dispose()
        run.cleanup()


if __name__ == "__main__":
    main()
