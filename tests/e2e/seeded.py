"""What the end-to-end tests of conversions share: the seeded rates, the oracle, producing and collecting."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from ces.adapters.kafka.connection import kafka_kwargs
from ces.events.base import utc_now
from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote
from ces.settings import Settings
from tests import support
from tests.e2e.conftest import Isolation, poll

# EUR-based rates as a provider would publish them; minor units per ISO 4217, typed here by hand.
RATES = {"USD": "1.0892", "JPY": "161.87", "GBP": "0.85713", "KWD": "0.33421", "NGN": "1745.1234"}
MINOR = {"EUR": 2, "USD": 2, "JPY": 0, "GBP": 2, "KWD": 3, "NGN": 2}
MARGIN = Decimal("0.01")


def oracle(base: str, target: str, amount: Decimal) -> Decimal:
    """amount * rate * (1 - margin), rate derived from EUR legs and kept to 16 significant digits."""
    with localcontext() as ctx:
        ctx.prec = 60
        eur_to = {code: Decimal(v) for code, v in RATES.items()} | {"EUR": Decimal(1)}
        rate = eur_to[target] / eur_to[base]
        if base != "EUR":  # derived (inverse or cross): 16 significant digits, half-even
            rate = Decimal(f"{rate:.15e}")
        out = amount * rate * (1 - MARGIN)
        return out.quantize(Decimal(1).scaleb(-MINOR[target]), rounding=ROUND_HALF_EVEN)


async def produce(settings: Settings, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    await support.produce(settings.kafka_bootstrap, topic, messages)


async def collect(settings: Settings, topics: list[str], want: int, timeout: float = 120) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(*topics, **kafka_kwargs(settings.kafka_bootstrap), auto_offset_reset="earliest")
    await consumer.start()
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < want:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(json.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return got


def seed_rates(settings: Settings, isolation: Isolation) -> dict[str, str]:
    """Publish fresh EUR rates to the isolated rates-fetched topic; return currency -> rate_id."""
    published = utc_now() - timedelta(hours=1)
    events = quote_events(
        ProviderQuote("ecb", "EUR", published, {code: Decimal(value) for code, value in RATES.items()}),
        uuid.uuid4(),
        published,
    )
    asyncio.run(produce(settings, f"{isolation.topic_prefix}rates-fetched", [(e.key(), e.to_json()) for e in events]))

    def projected() -> bool:
        with isolation.engine.connect() as conn:
            return bool(conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one() == len(RATES))

    poll(projected, timeout=90, what="seeded rates projected")
    return {e.target_currency: str(e.rate_id) for e in events}


def request(base: str, target: str, amount: str, request_id: str | None = None) -> tuple[bytes, bytes]:
    rid = request_id or str(uuid.uuid4())
    payload = {"request_id": rid, "base_currency": base, "target_currency": target, "amount": amount}
    return rid.encode(), json.dumps(payload).encode()


def raw_request(**fields: object) -> tuple[bytes, bytes]:
    rid = str(uuid.uuid4())
    return rid.encode(), json.dumps({"request_id": rid, **fields}).encode()
