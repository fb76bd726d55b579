"""Benchmark: the rate read paths' plans and times on the full ECB history, before and after migration 0009.

Loads the bundled ECB history (221,702 rows) into `exchange_rate` of a fresh schema migrated to 0008, runs
every query that reads `exchange_rate` by pair or publication (as `rate_store`, `rate_projector` and the
as-of lookups build them) under `EXPLAIN (ANALYZE, BUFFERS)`, then upgrades the schema to 0009 (one index
for the publication key and the pair lookups instead of two) and runs them again. Prints, per query and
layout, the median execution time of `--repeat` runs and the plan's index nodes (`--plans`: whole plans).
Needs the stack; run it under `flock /work/notes/bench.lock`.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, create_engine
from sqlalchemy.dialects import postgresql

from ces.adapters.postgres import migrate
from ces.adapters.postgres.rate_copy import _COPY_IN, _lines
from ces.adapters.postgres.rate_projector import _stored_matching
from ces.adapters.postgres.rate_store import LATEST_AT_MANY, LATEST_PER_PAIR, latest_query, pivot_rows_in
from ces.adapters.postgres.tables import exchange_rate
from ces.adapters.providers.ecb_history import bundled_quotes
from ces.domain.rates import Rate
from ces.projections.rate_wire import RateRow, rate_of_row, read_row
from ces.services.backfill import backfill_encoded
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

_DIALECT = postgresql.psycopg2.dialect()  # type: ignore[attr-defined]


def _sql(query: Any) -> tuple[str, dict[str, Any]]:
    compiled = query.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


def _queries(rows: list[RateRow]) -> dict[str, Callable[[], tuple[str, dict[str, Any]]]]:
    """Each read of `exchange_rate` by pair or publication, with the full history's arguments."""
    from sqlalchemy import func, select

    t = exchange_rate.c
    at = datetime(2015, 6, 15, tzinfo=UTC)
    start, end = datetime(2010, 1, 1, tzinfo=UTC), datetime(2011, 1, 1, tzinfo=UTC)
    sample: list[Rate] = [rate_of_row(r) for r in rows[100_000:100_200]]
    every = sorted({(r.base_currency, r.target_currency) for r in rows})

    def history(base: str, target: str) -> tuple[str, dict[str, Any]]:
        # `pair_history`'s statement, without running it (it derives the rates).
        from ces.domain.rates import legs_needed

        legs = legs_needed(base, target, "EUR")
        a, b = exchange_rate.alias("a"), exchange_rate.alias("b")
        query = select(a).where(a.c.base_currency == legs[0][0], a.c.target_currency == legs[0][1])
        if len(legs) == 2:
            query = select(a, b).join_from(
                a,
                b,
                (b.c.published_at == a.c.published_at)
                & (b.c.provider_name == a.c.provider_name)
                & (b.c.base_currency == legs[1][0])
                & (b.c.target_currency == legs[1][1]),
            )
            query = query.where(a.c.base_currency == legs[0][0], a.c.target_currency == legs[0][1])
        query = query.where(a.c.published_at >= start, a.c.published_at < end).order_by(
            a.c.published_at, a.c.fetched_at
        )
        return _sql(query.limit(1000))

    return {
        "latest EUR->USD": lambda: _sql(latest_query("EUR", "USD").limit(1)),
        "latest EUR->USD as of 2015-06-15": lambda: _sql(latest_query("EUR", "USD", at).limit(1)),
        "latest_at_many, 60 keys": lambda: (
            _sql(LATEST_AT_MANY)[0],
            {
                "bases": ["EUR"] * 60,
                "targets": [p[1] for p in every[:30]] * 2,
                "ats": [at] * 30 + [datetime(2026, 1, 1, tzinfo=UTC)] * 30,
            },
        ),
        "latest_per_pair (LATEST_PER_PAIR)": lambda: (_sql(LATEST_PER_PAIR)[0], {"base": None}),
        "latest_per_pair EUR (LATEST_PER_PAIR)": lambda: (_sql(LATEST_PER_PAIR)[0], {"base": "EUR"}),
        "latest_per_pair (main's DISTINCT ON)": lambda: _sql(
            select(exchange_rate)
            .distinct(t.base_currency, t.target_currency)
            .order_by(t.base_currency, t.target_currency, t.published_at.desc(), t.fetched_at.desc())
        ),
        "latest_per_pair EUR (main's DISTINCT ON)": lambda: _sql(
            select(exchange_rate)
            .distinct(t.base_currency, t.target_currency)
            .where(t.base_currency == "EUR")
            .order_by(t.base_currency, t.target_currency, t.published_at.desc(), t.fetched_at.desc())
        ),
        "pair_history EUR->USD, 2010": lambda: history("EUR", "USD"),
        "pair_history USD->JPY (cross), 2010": lambda: history("USD", "JPY"),
        "daily EUR->*, 2010": lambda: _sql(
            select(t.id, t.rate_value, t.published_at)
            .where(*pivot_rows_in("EUR", {p[1] for p in every}, date(2010, 1, 1), date(2010, 12, 31)))
            .order_by(t.published_at, t.fetched_at)
        ),
        "spans EUR->*, 2010": lambda: _sql(
            select(t.target_currency, func.min(t.published_at), func.max(t.published_at))
            .where(*pivot_rows_in("EUR", {p[1] for p in every}, date(2010, 1, 1), date(2010, 12, 31)))
            .group_by(t.target_currency)
        ),
        "stored_matching, 200 rows": lambda: _sql(_stored_matching([(r, uuid.uuid4()) for r in sample])),
    }


def _measure(conn: Connection, sql: str, params: dict[str, Any], repeat: int) -> tuple[float, list[str]]:
    times, plan = [], []
    for _ in range(repeat):
        plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)]
        found = next(line for line in plan if line.startswith("Execution Time"))
        times.append(float(re.findall(r"[0-9.]+", found)[0]))
    return statistics.median(times), plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--plans", action="store_true", help="print whole plans")
    args = parser.parse_args()
    export_role_env("admin")
    settings = Settings()
    encoded = (v for q in bundled_quotes(date(1999, 1, 1), date.today()) for _, v in backfill_encoded(q))
    rows = [row for row in map(read_row, encoded) if row is not None]
    schema = f"bench_plans_{uuid.uuid4().hex[:8]}"
    dsn = settings.migration_database_dsn
    migrate.upgrade(dsn, schema=schema, revision="0008")
    engine = create_engine(dsn, connect_args={"options": f"-csearch_path={schema}"})
    queries = _queries(rows)
    results: dict[str, dict[str, float]] = {name: {} for name in queries}
    try:
        raw = engine.raw_connection()
        try:
            for i in range(0, len(rows), 5000):
                raw.cursor().copy_expert(_COPY_IN, io.StringIO(_lines(rows[i : i + 5000], ordinal=False)))
            raw.commit()
        finally:
            raw.close()
        for layout in ("0008", "0009"):
            if layout == "0009":
                migrate.upgrade(dsn, schema=schema, revision="0009")
            with engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE exchange_rate")
                for name, build in queries.items():
                    sql, params = build()
                    ms, plan = _measure(conn, sql, params, args.repeat)
                    results[name][layout] = ms
                    nodes = [line.strip() for line in plan if "Index" in line or "Sort" in line or "Seq Scan" in line]
                    print(f"[{layout}] {name}: {ms:.3f} ms")
                    for line in plan if args.plans else nodes:
                        print(f"    {line}")
        print(f"\n{len(rows)} rows; median of {args.repeat} EXPLAIN ANALYZE runs, ms")
        print(f"{'query':46} {'0008':>9} {'0009':>9}")
        for name, by in results.items():
            print(f"{name:46} {by['0008']:9.3f} {by['0009']:9.3f}")
    finally:
        engine.dispose()
        admin = create_engine(dsn)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    main()
