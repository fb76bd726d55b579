"""Conversions at a past date end to end: requests with `as_of` through Kafka and through HTTP, decided by a
running worker against rates of two past publications, audited with the rows of the right day; and a quote
through the running gateway that agrees with the conversion and records nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from sqlalchemy import text

from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote
from ces.settings import Settings
from tests.e2e.conftest import Isolation, StartCes, poll
from tests.e2e.seeded import RATES, collect, produce, request, seed_rates
from tests.e2e.test_gateway import session_for, start_gateway

# Two ECB publications of a week in May 2010 (16:00 Frankfurt = 14:00 UTC): Friday and the Monday after.
FRIDAY, MONDAY = datetime(2010, 5, 7, 14, tzinfo=UTC), datetime(2010, 5, 10, 14, tzinfo=UTC)
PAST = {FRIDAY: {"USD": "1.2718", "JPY": "115.81"}, MONDAY: {"USD": "1.2994", "JPY": "119.51"}}


def seed_history(settings: Settings, isolation: Isolation) -> dict[tuple[datetime, str], str]:
    """Publish both past days' rates (after `seed_rates`' current ones); return (day, currency) -> rate_id."""
    events = [
        e
        for day, rates in PAST.items()
        for e in quote_events(
            ProviderQuote("ecb", "EUR", day, {c: Decimal(v) for c, v in rates.items()}), uuid.uuid4(), day
        )
    ]
    topic = f"{isolation.topic_prefix}rates-fetched"
    asyncio.run(produce(settings, topic, [(e.key(), e.to_json()) for e in events]))

    def projected() -> bool:
        with isolation.engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one()
        return bool(count == len(RATES) + len(events))

    poll(projected, timeout=90, what="past rates projected")
    return {(e.published_at, e.target_currency): str(e.rate_id) for e in events}


def expected_usd_jpy(day: datetime, amount: str) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        rates = PAST[day]
        rate = Decimal(f"{Decimal(rates['JPY']) / Decimal(rates['USD']):.15e}")  # 16 significant digits
        return (Decimal(amount) * rate * Decimal("0.99")).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)


def test_as_of_conversions_through_kafka_and_http_use_that_days_rows(
    start_ces: StartCes, isolation: Isolation, settings: Settings
) -> None:
    env = {**isolation.env, "CES_PROVIDER_URL": "http://127.0.0.1:9", "CES_FETCH_MAX_ATTEMPTS": "1"}
    worker = start_ces("worker", env=env)
    worker.wait_for_output("ces worker ready")
    current = seed_rates(settings, isolation)
    ids = seed_history(settings, isolation)
    friday_rows = [ids[(FRIDAY, "USD")], ids[(FRIDAY, "JPY")]]
    monday_rows = [ids[(MONDAY, "USD")], ids[(MONDAY, "JPY")]]

    # Through Kafka, as an outside producer sends them.
    cases: dict[str, tuple[str | None, str, Any]] = {
        "saturday": ("2010-05-08", "audited", friday_rows),
        "monday_before_publication": ("2010-05-10T15:59:59+02:00", "audited", friday_rows),
        "monday": ("2010-05-10", "audited", monday_rows),
        "now": (None, "audited", [current["USD"], current["JPY"]]),
        "stale_a_week_later": ("2010-05-17", "stale_rate", None),
        "before_any_rate": ("2010-05-07T13:59:59Z", "no_rate", None),
        "future": ("2999-01-01", "as_of_in_future", None),
        "malformed": ("2010-05-08T12:00", "invalid_as_of", None),
    }
    messages, by_case = [], {}
    for name, (as_of, _, _) in cases.items():
        key, value = request("USD", "JPY", "1000.00")
        if as_of is not None:
            value = value[:-1] + f', "as_of": "{as_of}"}}'.encode()
        messages.append((key, value))
        by_case[name] = key.decode()
    prefix = isolation.topic_prefix
    asyncio.run(produce(settings, f"{prefix}conversion-requests", messages))
    results = asyncio.run(collect(settings, [f"{prefix}conversions-audited", f"{prefix}conversions-rejected"], 8))
    got = {r["request_id"]: r for r in results}
    for name, (as_of, outcome, rows) in cases.items():
        result = got[by_case[name]]
        if outcome == "audited":
            assert result["event_type"] == "ConversionAudited" and result["rate_ids"] == rows, (name, result)
            assert result["schema_version"] == 3 and (result["as_of"] is None) == (as_of is None), (name, result)
        else:
            assert (result["event_type"], result["reason"]) == ("ConversionRejected", outcome), (name, result)
    saturday = got[by_case["saturday"]]
    assert saturday["as_of"] == "2010-05-08T23:59:59.999999Z"
    assert Decimal(saturday["output_amount"]) == expected_usd_jpy(FRIDAY, "1000.00")
    assert Decimal(got[by_case["monday"]]["output_amount"]) == expected_usd_jpy(MONDAY, "1000.00")
    assert got[by_case["future"]]["as_of"] == "2999-01-01T23:59:59.999999Z"
    with isolation.engine.connect() as conn:
        stored = dict(
            conn.execute(text("SELECT request_id::text, as_of FROM conversion_audit WHERE as_of IS NOT NULL")).all()
        )
    assert stored[by_case["monday_before_publication"]] == datetime(2010, 5, 10, 13, 59, 59, tzinfo=UTC)
    assert len(stored) == 3

    # Through HTTP: a conversion as of Saturday, and a quote that agrees with it and records nothing.
    url = start_gateway(start_ces, env)

    async def http() -> tuple[Any, ...]:
        async with session_for(url) as session:
            rid = str(uuid.uuid4())
            body = {"base_currency": "USD", "target_currency": "JPY", "amount": "1000.00", "request_id": rid}
            async with session.post(f"{url}/v1/conversions", json={**body, "as_of": "2010-05-08"}) as r:
                posted = (r.status, await r.json(content_type=None))
            params = {"base": "USD", "target": "JPY", "amount": "1000.00", "as_of": "2010-05-08"}
            async with session.get(f"{url}/v1/quote", params=params) as r:
                quoted = (r.status, await r.json(content_type=None))
            async with session.post(f"{url}/v1/conversions", json={**body, "as_of": "08.05.2010"}) as r:
                bad = (r.status, r.content_type, await r.json(content_type=None))
            return posted, quoted, bad

    (status, posted), (quote_status, quote), bad = asyncio.run(http())
    assert status == 201 and posted["rate_ids"] == friday_rows and posted["as_of"] == "2010-05-08T23:59:59.999999Z"
    assert quote_status == 200 and quote["conversion_of_record"] is False
    assert (quote["output_amount"], quote["rate_ids"]) == (posted["output_amount"], friday_rows)
    assert bad[0] == 422 and bad[1] == "application/problem+json" and bad[2]["code"] == "invalid_as_of"
    with isolation.engine.connect() as conn:
        audits = conn.execute(text("SELECT count(*) FROM conversion_audit")).scalar_one()
    assert audits == 5  # four through Kafka, one through HTTP: the quote and the refused POST recorded nothing


def test_nasty_as_of_bytes_from_an_outside_producer_are_each_answered_never_dead_lettered(
    start_ces: StartCes, isolation: Isolation, settings: Settings
) -> None:
    from tests.unit.test_as_of import NASTY_AS_OF

    env = {**isolation.env, "CES_PROVIDER_URL": "http://127.0.0.1:9", "CES_FETCH_MAX_ATTEMPTS": "1"}
    worker = start_ces("worker", env=env)
    worker.wait_for_output("ces worker ready")
    seed_rates(settings, isolation)
    cases = [*NASTY_AS_OF, ("9999-12-31T23:59:59Z", "as_of_in_future"), ("1999-01-03", "no_rate")]
    messages, expected = [], {}
    for value, reason in cases:
        key, body = request("USD", "JPY", "1000.00")
        # Raw bytes, as any producer may write them: json.dumps of the value, whatever its JSON type.
        messages.append((key, body[:-1] + b', "as_of": ' + json.dumps(value).encode() + b"}"))
        # A well-formed past as_of finds no row: only today's rates were published here.
        expected[key.decode()] = reason or ("audited" if value is None else "no_rate")
    prefix = isolation.topic_prefix
    asyncio.run(produce(settings, f"{prefix}conversion-requests", messages))
    topics = [f"{prefix}conversions-audited", f"{prefix}conversions-rejected"]
    results = asyncio.run(collect(settings, topics, len(messages)))
    got = {r["request_id"]: r.get("reason", "audited") for r in results}
    assert got == expected
