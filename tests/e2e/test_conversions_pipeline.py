"""Conversions end to end: a plain aiokafka producer (as an outside service) -> the worker -> results on
Kafka and immutable audit rows in PostgreSQL, checked against an oracle computed here independently."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ces.adapters.kafka.connection import kafka_kwargs
from ces.settings import Settings
from tests.e2e.conftest import Isolation, StartCes
from tests.e2e.seeded import MINOR, RATES, collect, oracle, produce, raw_request, request, seed_rates


def test_a_thousand_mixed_conversions_match_the_oracle_and_name_existing_rates(
    start_ces: StartCes, isolation: Isolation, settings: Settings, worker_env: dict[str, str]
) -> None:
    start_ces("worker", env=worker_env)
    rate_ids = seed_rates(settings, isolation)
    rng = random.Random(7)
    codes = ["EUR", *RATES]
    expected: dict[str, tuple[str, str, Decimal]] = {}
    messages = []
    for _ in range(1000):
        base, target = rng.sample(codes, 2)  # direct (EUR->X), inverse (X->EUR) and cross (X->Y)
        units = rng.randint(1, 10**7)
        amount = Decimal(units).scaleb(-MINOR[base])
        key, value = request(base, target, str(amount))
        expected[key.decode()] = (base, target, amount)
        messages.append((key, value))
    asyncio.run(produce(settings, f"{isolation.topic_prefix}conversion-requests", messages))

    results = asyncio.run(collect(settings, [f"{isolation.topic_prefix}conversions-audited"], 1000))
    assert len(results) == 1000
    for audited in results:
        base, target, amount = expected[audited["request_id"]]
        assert audited["event_type"] == "ConversionAudited"
        assert Decimal(audited["output_amount"]) == oracle(base, target, amount), audited
        assert audited["input_amount"] == str(amount)
        legs = [code for code in (base, target) if code != "EUR"]
        assert audited["rate_ids"] == [rate_ids[code] for code in legs]

    with isolation.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT count(*) AS n, count(r1.id) AS first_ok, count(a.second_rate_id) AS crosses, "
                "count(r2.id) AS second_ok FROM conversion_audit a "
                "LEFT JOIN exchange_rate r1 ON r1.id = a.rate_used_id "
                "LEFT JOIN exchange_rate r2 ON r2.id = a.second_rate_id"
            )
        ).one()
    assert rows.n == 1000 and rows.first_ok == 1000 and rows.second_ok == rows.crosses > 0


def test_bad_messages_are_rejected_or_dead_lettered_and_good_ones_go_through(
    start_ces: StartCes, isolation: Isolation, settings: Settings, worker_env: dict[str, str]
) -> None:
    start_ces("worker", env=worker_env)
    seed_rates(settings, isolation)
    bad_rejected = {
        "negative": (request("USD", "EUR", "-5.00"), "invalid_amount"),
        "nan": (request("USD", "EUR", "NaN"), "invalid_amount"),
        "infinity": (request("USD", "EUR", "Infinity"), "invalid_amount"),
        "too_many_decimals": (request("JPY", "USD", "10.5"), "invalid_amount"),
        "json_number": (raw_request(base_currency="USD", target_currency="EUR", amount=10.5), "invalid_amount"),
        "unknown_currency": (request("USD", "ZZZ", "1.00"), "unknown_currency"),
        "same_currency": (request("USD", "USD", "1.00"), "unsupported_pair"),
        "no_rate": (request("USD", "CHF", "1.00"), "no_rate"),
        "wrong_type": (raw_request(base_currency=840, target_currency="EUR", amount="1.00"), "invalid_request"),
        "huge_amount": (request("USD", "EUR", "1" + "0" * 20), "invalid_amount"),
    }
    dead = {
        b"{not json": "invalid_json",
        b"[1, 2]": "not_an_object",
        json.dumps({"base_currency": "USD", "target_currency": "EUR", "amount": "1.00"}).encode(): "invalid_request_id",
        b"\xff\xfe\x00": "invalid_json",
        json.dumps({"pad": "x" * 40_000}).encode(): "oversized",
    }
    good = [request("USD", "EUR", f"{i}.00") for i in range(1, 21)]
    messages: list[tuple[bytes | None, bytes]] = []
    bad_iter = iter(list(bad_rejected.values()))
    dead_iter = iter(list(dead))
    for i, message in enumerate(good):  # interleave: good, bad, good, dead, ...
        messages.append(message)
        nxt = next(bad_iter, None) if i % 2 == 0 else None
        if nxt is not None:
            messages.append(nxt[0])
        elif (poison := next(dead_iter, None)) is not None:
            messages.append((None, poison))
    assert all(m in messages for m, _ in bad_rejected.values())
    asyncio.run(produce(settings, f"{isolation.topic_prefix}conversion-requests", messages))

    prefix = isolation.topic_prefix
    results = asyncio.run(
        collect(
            settings, [f"{prefix}conversions-audited", f"{prefix}conversions-rejected"], len(good) + len(bad_rejected)
        )
    )
    by_id = {r["request_id"]: r for r in results}
    for key, _ in good:
        assert by_id[key.decode()]["event_type"] == "ConversionAudited"
    for (key, _), reason in bad_rejected.values():
        result = by_id[key.decode()]
        assert (result["event_type"], result["reason"]) == ("ConversionRejected", reason), result
        assert result["message"]

    async def dead_letters() -> list[tuple[bytes, str]]:
        consumer = AIOKafkaConsumer(
            f"{prefix}ces-dead-letters", **kafka_kwargs(settings.kafka_bootstrap), auto_offset_reset="earliest"
        )
        await consumer.start()
        got: list[tuple[bytes, str]] = []
        try:
            async with asyncio.timeout(60):
                while len(got) < len(dead):
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        got.extend((r.value, dict(r.headers)["ces.dlq.reason"].decode()) for r in records)
        finally:
            await consumer.stop()
        return got

    assert sorted(asyncio.run(dead_letters())) == sorted(dead.items())


def test_duplicate_request_ids_give_one_audit_and_identical_results(
    start_ces: StartCes, isolation: Isolation, settings: Settings, worker_env: dict[str, str]
) -> None:
    start_ces("worker", env=worker_env)
    seed_rates(settings, isolation)
    rid = str(uuid.uuid4())
    message = request("GBP", "JPY", "250.00", rid)
    topic = f"{isolation.topic_prefix}conversion-requests"
    asyncio.run(produce(settings, topic, [message, message]))  # a producer retry in the same batch
    first = asyncio.run(collect(settings, [f"{isolation.topic_prefix}conversions-audited"], 1))
    asyncio.run(produce(settings, topic, [message]))  # and a retry much later
    results = asyncio.run(collect(settings, [f"{isolation.topic_prefix}conversions-audited"], 2))
    assert results[0] == results[1] == first[0]  # re-emitted result identical to the first
    with isolation.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM conversion_audit")).scalar_one() == 1
    for statement in ("UPDATE conversion_audit SET output_amount = 0", "DELETE FROM conversion_audit"):
        # The application role is refused by its privileges (the owner would meet the trigger).
        with pytest.raises(DBAPIError, match="permission denied"), isolation.engine.begin() as conn:
            conn.execute(text(statement))


def test_conversions_continue_from_postgres_when_redis_is_down(
    start_ces: StartCes, isolation: Isolation, settings: Settings, worker_env: dict[str, str]
) -> None:
    worker = start_ces("worker", env={**worker_env, "CES_REDIS_URL": "redis://127.0.0.1:1/0"})
    seed_rates(settings, isolation)  # rows are written; the cache update fails and is only logged
    key, value = request("USD", "NGN", "100.00")
    asyncio.run(produce(settings, f"{isolation.topic_prefix}conversion-requests", [(key, value)]))
    results = asyncio.run(collect(settings, [f"{isolation.topic_prefix}conversions-audited"], 1))
    assert results[0]["request_id"] == key.decode()
    assert Decimal(results[0]["output_amount"]) == oracle("USD", "NGN", Decimal("100.00"))
    assert "rate cache unavailable" in worker.output()  # the fallback is visible to operators
