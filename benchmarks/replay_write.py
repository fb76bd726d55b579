"""Benchmark: the replay's database write alone, a fresh target with its foreign keys (the path of a resumed
target) against one whose foreign keys and secondary index are deferred (`replay_constraints.py`), alternately.

Each round builds a migrated schema with the same two rates, writes `--events` decoded `ConversionAudited`
(built once, shared) with `copy_decisions` in batches of `--batch-size`, one transaction each, and, for the
deferred variant, adds the constraints back at the end (counted in its time). It prints per round: wall
seconds, rows/s, the client's CPU per event (`time.thread_time`: building the COPY text), and how long
adding back took. Needs the stack's PostgreSQL; drops its schemas.

    python benchmarks/replay_write.py [--events 200000] [--batch-size 5000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import create_engine, text

from ces.adapters.postgres import migrate
from ces.adapters.postgres.bulk_audit import copy_decisions
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.replay_constraints import defer, restore
from ces.adapters.postgres.replay_target import schema_url
from ces.events.base import utc_now
from ces.events.conversions import ConversionAudited
from ces.events.rates import RateFetched
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env


def events(n: int, usd: RateFetched, jpy: RateFetched) -> list[ConversionAudited]:
    now = utc_now()
    direct = ConversionAudited(
        event_id=uuid.uuid4(),
        occurred_at=now,
        audit_id=uuid.uuid4(),
        request_id=uuid.uuid4(),
        rate_id=usd.rate_id,
        rate_ids=[usd.rate_id],
        rate_kind="direct",
        base_currency="EUR",
        target_currency="USD",
        input_amount=Decimal("1234.56"),
        rate_value=usd.rate_value,
        margin=Decimal("0.01"),
        output_amount=Decimal("1331.25"),
        converted_at=now,
    )
    cross = direct.model_copy(
        update={
            "rate_ids": [usd.rate_id, jpy.rate_id],
            "rate_kind": "cross",
            "base_currency": "USD",
            "target_currency": "JPY",
            "rate_value": Decimal("148.6137532133676"),
        }
    )
    out = []
    for i in range(n):
        at = now + timedelta(milliseconds=i)
        out.append(
            (cross if i % 2 else direct).model_copy(
                update={
                    "audit_id": uuid.uuid4(),
                    "request_id": uuid.uuid4(),
                    "event_id": uuid.uuid4(),
                    "converted_at": at,
                }
            )
        )
    return out


def one_round(
    settings: Settings, variant: str, decided: list[ConversionAudited], rates: list[RateFetched], size: int
) -> str:
    schema = f"bench_write_{uuid.uuid4().hex[:8]}"
    admin = create_engine(settings.migration_database_dsn)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    migrate.upgrade(settings.migration_database_dsn, schema=schema)
    engine = create_engine(schema_url(settings.migration_database_dsn, schema))
    try:
        RateProjector(engine).project(rates)
        if variant == "deferred":
            defer(engine)
        cpu, started = time.thread_time(), time.monotonic()
        for i in range(0, len(decided), size):
            copy_decisions(engine, decided[i : i + size])
        load_s, cpu_s = time.monotonic() - started, time.thread_time() - cpu
        restored = time.monotonic()
        if variant == "deferred":
            restore(engine)
        restore_s = time.monotonic() - restored
        total = load_s + restore_s
        n = len(decided)
        return (
            f"{variant:13} | {total:7.1f}s | {n / total:9,.0f} rows/s | load {load_s:6.1f}s | "
            f"adding back {restore_s:4.1f}s | client CPU {cpu_s / n * 1e6:5.1f} us/event"
        )
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main() -> None:
    export_role_env("admin")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    settings = Settings()
    now = utc_now()
    rates = [
        RateFetched.for_quote(
            provider_name="ecb",
            base_currency="EUR",
            target_currency=code,
            rate_value=Decimal(value),
            published_at=now - timedelta(hours=1),
            fetched_at=now - timedelta(minutes=55),
            fetch_id=uuid.uuid4(),
        )
        for code, value in (("USD", "1.0892"), ("JPY", "161.87"))
    ]
    decided = events(args.events, rates[0], rates[1])
    print(f"{args.events:,} audits in batches of {args.batch_size:,}, one fresh schema per round")
    for _ in range(args.rounds):
        for variant in ("foreign keys", "deferred"):
            print(one_round(settings, variant, decided, rates, args.batch_size), flush=True)


if __name__ == "__main__":
    main()
