"""Benchmark: PostgreSQL's own cost of the rate rows, the projection's floor.

COPYs the whole bundled ECB history (221,702 rows, as `rate_copy.copied_insert` formats them, 2,000 a batch,
one commit each) into `exchange_rate` of a fresh schema from one connection, and prints the wall time and
the backend's CPU seconds (read from /proc: run it on the database's host, as root or its user) and the
server's WAL bytes a row: by default with the table as migrated (head), as it was before migration 0010
(the `event_id` UNIQUE) and as migrated without the CHECK constraints; `--variant NAME` (repeatable) picks
the layouts, among them one index or constraint left out at a time and columns stored unparsed (what
parsing them costs), to show what each costs. `--rounds N` repeats the whole set, alternately. No worker,
no Kafka. Needs the stack; run it under `flock /work/notes/bench.lock`.
"""

from __future__ import annotations

import argparse
import io
import os
import time
import uuid
from datetime import date

from sqlalchemy import create_engine

from ces.adapters.postgres import migrate
from ces.adapters.postgres.rate_copy import _COPY_IN, _lines
from ces.adapters.providers.ecb_history import bundled_quotes
from ces.projections.rate_wire import RateRow, read_row
from ces.services.backfill import backfill_encoded
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

_TICK = os.sysconf("SC_CLK_TCK")
_WITHOUT_CHECKS = [
    "ALTER TABLE exchange_rate DROP CONSTRAINT exchange_rate_base_currency_check, "
    "DROP CONSTRAINT exchange_rate_target_currency_check, DROP CONSTRAINT exchange_rate_rate_value_check, "
    "DROP CONSTRAINT exchange_rate_check"
]
_WITHOUT_REGEXES = [
    "ALTER TABLE exchange_rate DROP CONSTRAINT exchange_rate_base_currency_check, "
    "DROP CONSTRAINT exchange_rate_target_currency_check"
]
_C_COLLATION = [
    'ALTER TABLE exchange_rate ALTER COLUMN base_currency TYPE char(3) COLLATE "C", '
    'ALTER COLUMN target_currency TYPE char(3) COLLATE "C", ALTER COLUMN provider_name TYPE text COLLATE "C"'
]
_NO_EVENT_KEY = ["ALTER TABLE exchange_rate DROP CONSTRAINT exchange_rate_event_id_key"]
# One regex for both codes: `char(3)` reads back without its trailing blanks, so the 6 letters can only
# be 3 of each (exactly what the two CHECKs accept).
_ONE_REGEX = [
    *_WITHOUT_REGEXES,
    "ALTER TABLE exchange_rate ADD CONSTRAINT exchange_rate_currencies_check "
    "CHECK ((base_currency::text || target_currency::text) ~ '^[A-Z]{6}$')",
]
# Each variant: (label, revision, DDL run on the fresh schema before the COPY).
_VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    "head": ("exchange_rate as migrated (head)", "head", []),
    "0009": ("as before 0010 (event_id UNIQUE)", "0009", []),
    "0008": ("as before 0009 (four indexes)", "0008", []),
    "no-checks": ("as migrated, without the CHECKs", "head", _WITHOUT_CHECKS),
    "no-regex": ("as migrated, without the two currency regex CHECKs", "head", _WITHOUT_REGEXES),
    "no-event-key": ("0009 without the event_id UNIQUE (what 0010 does)", "0009", _NO_EVENT_KEY),
    "one-regex": ("as migrated, one regex CHECK for both currency codes", "head", _ONE_REGEX),
    # Upper bounds of what parsing costs (what a binary COPY could save): the columns as text, unparsed.
    "instants-as-text": (
        "as migrated, the two instants stored as text (not parsed)",
        "head",
        ["ALTER TABLE exchange_rate ALTER COLUMN published_at TYPE text, ALTER COLUMN fetched_at TYPE text"],
    ),
    "value-as-text": (
        "as migrated, the value stored as text (not parsed)",
        "head",
        [
            "ALTER TABLE exchange_rate DROP CONSTRAINT exchange_rate_rate_value_check",
            "ALTER TABLE exchange_rate ALTER COLUMN rate_value TYPE text",
        ],
    ),
    "no-publication": ("as migrated, without the publication index", "head", ["DROP INDEX exchange_rate_publication"]),
    "c-collation": ('as migrated, text columns COLLATE "C"', "head", _C_COLLATION),
    "no-pk": (
        "as migrated, without the primary key",
        "head",
        ["ALTER TABLE exchange_rate DROP CONSTRAINT exchange_rate_pkey CASCADE"],
    ),
}


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _run(settings: Settings, label: str, revision: str, ddl: list[str], batches: list[str], rows: int) -> None:
    schema = f"bench_copy_{uuid.uuid4().hex[:8]}"
    migrate.upgrade(settings.migration_database_dsn, schema=schema, revision=revision)
    engine = create_engine(settings.migration_database_dsn, connect_args={"options": f"-csearch_path={schema}"})
    try:
        with engine.begin() as conn:
            for statement in ddl:
                conn.exec_driver_sql(statement)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            found = cursor.fetchone()
            assert found is not None
            pid = int(found[0])
            cursor.execute("SELECT pg_current_wal_lsn()")
            lsn = cursor.fetchone()
            assert lsn is not None
            cpu, started = _cpu_seconds(pid), time.time()
            for batch in batches:
                cursor.copy_expert(_COPY_IN, io.StringIO(batch))
                raw.commit()
            wall, cpu = time.time() - started, _cpu_seconds(pid) - cpu
            # The server's WAL, other sessions' included (a shared server: an upper bound).
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn[0],))
            wal = cursor.fetchone()
            assert wal is not None
            raw.commit()
        finally:
            raw.close()
        load = os.getloadavg()[0]
        print(
            f"{label}: {wall:.1f}s wall, backend CPU {cpu:.1f}s ({cpu / rows * 1e6:.1f} us/row), "
            f"WAL {float(wal[0]) / rows:.0f} B/row, load {load:.2f}"
        )
    finally:
        engine.dispose()
        admin = create_engine(settings.migration_database_dsn)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--variant",
        action="append",
        choices=sorted(_VARIANTS),
        help="the table layouts to COPY into, alternately (default: head, 0008, no-checks)",
    )
    args = parser.parse_args()
    export_role_env("admin")
    settings = Settings()
    encoded = (v for q in bundled_quotes(date(1999, 1, 1), date.today()) for _, v in backfill_encoded(q))
    rows: list[RateRow] = [row for row in map(read_row, encoded) if row is not None]
    batches = [_lines(rows[i : i + 2000], ordinal=False) for i in range(0, len(rows), 2000)]
    print(f"{len(rows)} rows, {len(batches)} batches")
    for _ in range(args.rounds):
        for name in args.variant or ["head", "0009", "no-checks"]:
            label, revision, ddl = _VARIANTS[name]
            _run(settings, label, revision, ddl, batches, len(rows))


if __name__ == "__main__":
    main()
