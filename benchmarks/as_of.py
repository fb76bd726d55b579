"""Benchmark: conversions `as_of` a past date against the whole ECB history in PostgreSQL.

Loads the bundled history (1999 to today, ~221,700 rows) into a scratch schema (the backfill's events, one
COPY), then decides batches of historical requests with the worker's decider and compares the two ways of
finding their rates: one LATERAL query per batch (what CES does) against one query per leg. Also times a
batch of current-rate requests (no `as_of`, PostgreSQL only, no cache) for scale. Prints requests/s.
Needs the stack (`cesdev stack up`).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, create_engine, text

from ces.adapters.postgres import migrate
from ces.adapters.postgres.rate_store import RateRepository
from ces.adapters.providers.ecb_history import bundled_quotes, load_history
from ces.domain.rates import legs_needed
from ces.events.requests import ParsedRequest, parse_request
from ces.services.backfill import backfill_events
from ces.services.conversions import ConversionDecider
from ces.services.rate_lookup import RateLookup
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

CODES = ["EUR", "USD", "JPY", "GBP", "CHF", "AUD", "CAD", "SEK", "NOK", "PLN", "CZK", "HUF", "ZAR", "KRW"]


def load(engine: Engine) -> int:
    rows = io.StringIO()
    count = 0
    for quote in bundled_quotes(date(1999, 1, 1), datetime.now(UTC).date()):
        for e in backfill_events(quote):
            fields = (e.rate_id, e.base_currency, e.target_currency, e.rate_value, e.provider_name)
            rows.write("\t".join(map(str, (*fields, e.published_at, e.fetched_at, e.fetch_id, e.event_id))) + "\n")
            count += 1
    rows.seek(0)
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.copy_expert(
            "COPY exchange_rate (id, base_currency, target_currency, rate_value, provider_name, published_at, "
            "fetched_at, fetch_id, event_id) FROM STDIN",
            rows,
        )
    with engine.begin() as conn:
        # What autovacuum does to a table this size soon after such a load; without statistics the
        # planner guesses, and the first historical batches measured 2-3x slower.
        conn.execute(text("ANALYZE exchange_rate"))
    return count


def requests(n: int, rng: random.Random, with_as_of: bool) -> list[ParsedRequest]:
    days = load_history().days
    out = []
    for _ in range(n):
        base, target = rng.sample(CODES, 2)
        body = {"request_id": str(uuid.uuid4()), "base_currency": base, "target_currency": target, "amount": "100"}
        if with_as_of:
            body["as_of"] = rng.choice(days).isoformat()
        out.append(parse_request(json.dumps(body).encode(), max_amount=Decimal(10**12)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=2000, help="requests per batch (the worker's default)")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    export_role_env("admin")
    settings = Settings()
    schema = f"bench_asof_{uuid.uuid4().hex[:8]}"
    migrate.upgrade(settings.migration_database_dsn, schema=schema)
    engine = create_engine(settings.database_dsn, connect_args={"options": f"-csearch_path={schema}"})
    try:
        started = time.perf_counter()
        rows = load(engine)
        print(f"loaded {rows} rates in {time.perf_counter() - started:.1f}s")
        repository = RateRepository(engine)
        decider = ConversionDecider(
            RateLookup(None, repository, "EUR"),
            default_margin=Decimal("0.01"),
            margin_overrides={},
            max_rate_age=timedelta(days=6),
        )
        rng = random.Random(1)
        for label, with_as_of in (("as_of, one query per batch", True), ("current rates (PostgreSQL)", False)):
            batches = [requests(args.batch, rng, with_as_of) for _ in range(args.batches)]
            started = time.perf_counter()
            decided = sum(len(asyncio.run(decider.decide(b))) for b in batches)
            seconds = time.perf_counter() - started
            print(f"{label}: {decided} requests in {seconds:.2f}s = {decided / seconds:,.0f} requests/s")
        # The alternative: one query per leg of every historical request.
        batch = requests(args.batch, rng, True)
        keys = [
            (*leg, r.as_of)
            for r in batch
            if r.valid and r.as_of
            for leg in legs_needed(r.valid.base.code, r.valid.target.code, "EUR")
        ]
        started = time.perf_counter()
        one_by_one = [repository.latest(b, t, at=at) for b, t, at in keys]
        per_leg = time.perf_counter() - started
        started = time.perf_counter()
        together = repository.latest_at_many(keys)
        lateral = time.perf_counter() - started
        assert [r.rate_id if r else None for r in one_by_one] == [r.rate_id if r else None for r in together]
        print(
            f"{len(keys)} legs of {len(batch)} historical requests: one query per leg {per_leg:.2f}s, "
            f"one LATERAL query {lateral:.3f}s ({per_leg / lateral:.0f}x)"
        )
    finally:
        engine.dispose()
        owner = create_engine(settings.migration_database_dsn)
        with owner.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        owner.dispose()


if __name__ == "__main__":
    main()
