"""Benchmark: what a load run asked of the broker and of PostgreSQL, per conversion.

`snapshot` reads PostgreSQL's cumulative statistics (`pg_stat_database` for the database, `pg_stat_wal`,
`pg_stat_user_tables` and `pg_stat_user_indexes`) and the Kafka request counts that probed processes wrote
(`benchmarks/kafka_counts/sitecustomize.py`) into a JSON file; `compare` prints the difference between two
snapshots divided by the number of conversions, taken as the rows inserted into the audit table named
(`SCHEMA.conversion_audit` for CES, the floor's `SCHEMA.audit`). Take the two snapshots around a load run that
holds the benchmark lock, so the deltas are that run's (the statistics are cluster-wide); wait ~2 s after the
load before the second one (backends report their statistics at most once a second).

    export CES_BENCH_KAFKA_COUNTS=/tmp/counts; mkdir -p $CES_BENCH_KAFKA_COUNTS
    PYTHONPATH=$PWD:$PWD/benchmarks/kafka_counts python benchmarks/serve_isolated.py --port 18080 --key-file /tmp/k
    python benchmarks/request_counts.py snapshot /tmp/s0.json   # then the load, then:
    python benchmarks/request_counts.py snapshot /tmp/s1.json
    python benchmarks/request_counts.py compare /tmp/s0.json /tmp/s1.json --table bench_1234abcd.conversion_audit
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

_DATABASE = (
    "SELECT xact_commit, xact_rollback, tup_inserted, tup_fetched, blks_hit, blks_read"
    " FROM pg_stat_database WHERE datname = current_database()"
)
_WAL = "SELECT wal_records, wal_fpi, wal_bytes::bigint AS wal_bytes, wal_sync FROM pg_stat_wal"
_TABLES = "SELECT schemaname || '.' || relname, n_tup_ins, coalesce(idx_scan, 0), seq_scan FROM pg_stat_user_tables"
_INDEXES = "SELECT schemaname || '.' || indexrelname, idx_scan, idx_tup_fetch FROM pg_stat_user_indexes"


def snapshot(counts_dir: str | None) -> dict[str, Any]:
    export_role_env("admin")
    engine = create_engine(Settings().migration_database_dsn)
    with engine.connect() as db:
        shot: dict[str, Any] = {
            "database": dict(db.execute(text(_DATABASE)).mappings().one()),
            "wal": dict(db.execute(text(_WAL)).mappings().one()),
            "tables": {
                name: {"ins": ins, "idx_scan": scans, "seq_scan": seq}
                for name, ins, scans, seq in db.execute(text(_TABLES))
            },
            "indexes": {name: {"scan": scans, "fetch": fetched} for name, scans, fetched in db.execute(text(_INDEXES))},
        }
    engine.dispose()
    shot["kafka"] = {}
    if counts_dir:
        for path in Path(counts_dir).glob("*.json"):
            try:
                shot["kafka"][path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being replaced
    return shot


def compare(before: dict[str, Any], after: dict[str, Any], table: str) -> None:
    conversions = after["tables"][table]["ins"] - before["tables"][table]["ins"]
    if conversions <= 0:
        raise SystemExit(f"no rows inserted into {table} between the two snapshots")

    def per(delta: float) -> str:
        return f"{delta / conversions:.3f}"

    print(f"conversions: {conversions} (rows inserted into {table})")
    for group in ("database", "wal"):
        print(
            f"{group}: " + ", ".join(f"{k} {per(float(v) - float(before[group][k]))}" for k, v in after[group].items())
        )
    for kind in ("tables", "indexes"):
        for name, now in sorted(after[kind].items()):
            then = before[kind].get(name)
            if then is None or not name.startswith(table.split(".")[0] + ".") or now == then:
                continue  # another schema's, or untouched
            print(
                f"{kind[:-1] if kind == 'tables' else 'index'} {name}: "
                + ", ".join(f"{k} {per(v - then[k])}" for k, v in now.items())
            )
    for pid, now in sorted(after["kafka"].items()):
        then = before["kafka"].get(pid, {"counts": {}})["counts"]
        delta = {k: v - then.get(k, 0) for k, v in now["counts"].items() if v != then.get(k, 0)}
        if delta:
            print(f"kafka pid {pid} ({now['argv'][:70]}):")
            print("    " + ", ".join(f"{k} {per(v)}" for k, v in sorted(delta.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    shot = sub.add_parser("snapshot")
    shot.add_argument("out", type=Path)
    shot.add_argument("--counts-dir", default=os.environ.get("CES_BENCH_KAFKA_COUNTS"))
    diff = sub.add_parser("compare")
    diff.add_argument("before", type=Path)
    diff.add_argument("after", type=Path)
    diff.add_argument("--table", required=True, help="SCHEMA.TABLE whose inserted rows are the conversions")
    args = parser.parse_args()
    if args.command == "snapshot":
        args.out.write_text(json.dumps(snapshot(args.counts_dir), default=str))
    else:
        compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()), args.table)


if __name__ == "__main__":
    main()
