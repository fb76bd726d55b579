"""Rates end to end: provider simulator -> timer agent -> rates-fetched -> exchange_rate rows and Redis."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import date
from decimal import Decimal
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from ces.adapters.kafka.connection import kafka_kwargs
from ces.adapters.providers.ecb import publication_instant
from ces.adapters.providers.ecb_history import load_history
from ces.settings import Settings
from tests.e2e.conftest import Isolation, RunningProcess, StartCes, free_port, poll

SIM_DAY = date(2024, 3, 15)


def sim_call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def start_sim(start_ces: StartCes) -> tuple[RunningProcess, int]:
    port = free_port()
    sim = start_ces("provider-sim", "--port", str(port), "--today", SIM_DAY.isoformat())

    def answers() -> bool:
        try:
            return sim_call(port, "GET", "/_sim/state")["today"] == SIM_DAY.isoformat()
        except OSError:
            return False

    poll(answers, timeout=60, what="the provider simulator")
    return sim, port


def rows(isolation: Isolation) -> dict[str, tuple[Decimal, str]]:
    with isolation.engine.connect() as conn:
        result = conn.execute(text("SELECT target_currency, rate_value, id FROM exchange_rate"))
        return {r.target_currency: (r.rate_value, str(r.id)) for r in result}


def worker_env(isolation: Isolation, sim_port: int, **extra: str) -> dict[str, str]:
    return {
        **isolation.env,
        "CES_PROVIDER": "ecb",
        "CES_PROVIDER_URL": f"http://127.0.0.1:{sim_port}",
        "CES_FETCH_INTERVAL_SECONDS": "3",
        **extra,
    }


def test_timer_fetch_lands_as_exact_rows_and_cache_and_a_second_fetch_adds_nothing(
    start_ces: StartCes, isolation: Isolation, settings: Settings
) -> None:
    _, sim_port = start_sim(start_ces)
    start_ces("worker", env=worker_env(isolation, sim_port))
    expected = load_history().rates[SIM_DAY]

    poll(lambda: len(rows(isolation)) == len(expected), timeout=90, what="one row per published currency")
    stored = rows(isolation)
    assert {code: value for code, (value, _) in stored.items()} == dict(expected)  # exact provider digits

    cache = redis.Redis.from_url(settings.redis_dsn)
    try:
        cached = cache.hgetall(f"{isolation.redis_prefix}EUR:USD")
    finally:
        cache.close()
    assert Decimal(cached[b"rate_value"].decode()) == expected["USD"]
    assert cached[b"rate_id"].decode() == stored["USD"][1]
    assert cached[b"published_at"].decode() == publication_instant(SIM_DAY).isoformat()

    # The next interval fetches the same publication again: the provider is asked, no row is added.
    served = sim_call(sim_port, "GET", "/_sim/state")["provider_requests"]
    poll(
        lambda: sim_call(sim_port, "GET", "/_sim/state")["provider_requests"] >= served + 1,
        timeout=30,
        what="a second fetch",
    )
    with isolation.engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one()
    assert total == len(expected)


async def _first_failure(settings: Settings, topic: str) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        topic, **kafka_kwargs(settings.kafka_bootstrap), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        async with asyncio.timeout(90):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        payload: dict[str, Any] = json.loads(record.value)
                        return payload
    finally:
        await consumer.stop()


def test_provider_outage_retries_with_growing_delays_reports_failure_and_recovers_next_tick(
    start_ces: StartCes, isolation: Isolation, settings: Settings
) -> None:
    _, sim_port = start_sim(start_ces)
    sim_call(sim_port, "POST", "/_sim/fail", {"mode": "http500", "count": 4})
    start_ces(
        "worker",
        env=worker_env(
            isolation,
            sim_port,
            CES_FETCH_MAX_ATTEMPTS="4",
            CES_FETCH_BACKOFF_INITIAL_SECONDS="0.2",
            CES_FETCH_INTERVAL_SECONDS="5",
        ),
    )
    failure = asyncio.run(_first_failure(settings, f"{isolation.topic_prefix}rate-fetch-failures"))
    assert failure["event_type"] == "RateFetchFailed"
    assert failure["attempts"] == 4
    assert failure["retryable"] is True
    delays = failure["retry_delays_ms"]
    assert len(delays) == 3
    assert delays[0] < delays[1] < delays[2], delays  # exponential backoff, visibly growing
    assert "500" in failure["last_error"]
    assert rows(isolation) == {}  # the outage wrote nothing

    # The simulator is healthy again; the next tick fetches and the rates arrive.
    expected = load_history().rates[SIM_DAY]
    poll(lambda: len(rows(isolation)) == len(expected), timeout=60, what="recovery on the next tick")
    assert sim_call(sim_port, "GET", "/_sim/state")["provider_requests"] >= 5
