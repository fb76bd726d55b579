"""After a replay: compare the target schema with live (read only), and promote it to the live name."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ces.adapters.postgres.replay_constraints import DEFERRED_TABLE, deferred
from ces.adapters.postgres.replay_target import schema_tables
from ces.adapters.postgres.verify import PROJECTION_TABLES, TableResult, quote_ident, verify
from ces.projections.replay.model import CHECKPOINT_TABLE, ReplayError, check_schema_name


def verify_target(
    database_url: str, live_schema: str, target_schema: str, projection: str, *, max_diffs: int
) -> list[TableResult]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET TRANSACTION READ ONLY"))  # verifying can never write either schema
            return verify(conn, live_schema, target_schema, PROJECTION_TABLES[projection], max_diffs=max_diffs)
    finally:
        engine.dispose()


class SwapRefused(ReplayError):
    def __init__(self, message: str, results: list[TableResult] | None = None) -> None:
        super().__init__(message)
        self.results = results or []


def swap(database_url: str, live_schema: str, target_schema: str, *, lock_timeout_s: int = 30) -> str:
    """Promote the target: in one transaction, rename live to `<live>_replaced_<UTC time>` and the target to
    the live name. Returns the old schema's new name.

    Under SHARE locks on the live tables (writers wait, readers go on) the target is verified against
    live once more; any difference refuses the swap. Stop the live writers first: a write waiting on the
    lock would, once released, land in the renamed old schema (its statement already resolved the table).
    """
    check_schema_name(target_schema)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    replaced = f"{live_schema[: 63 - len(stamp) - 10]}_replaced_{stamp}"
    engine = create_engine(database_url, poolclass=NullPool)
    tables = PROJECTION_TABLES["all"]
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_s)}s'"))
            live_only = schema_tables(conn, live_schema) - schema_tables(conn, target_schema)
            if live_only:
                raise SwapRefused(f"live schema has tables the replay does not rebuild: {', '.join(sorted(live_only))}")
            missing = [name for name, *_ in deferred(conn, target_schema)]
            if missing:  # a replay still loading, or whose foreign keys did not validate
                raise SwapRefused(f"the target still lacks {', '.join(missing)}: finish the replay first (re-run it)")
            conn.execute(text(f"DROP TABLE IF EXISTS {quote_ident(target_schema)}.{DEFERRED_TABLE}"))
            names = ", ".join(f"{quote_ident(live_schema)}.{quote_ident(t.name)}" for t in tables)
            conn.execute(text(f"LOCK TABLE {names} IN SHARE MODE"))
            results = verify(conn, live_schema, target_schema, tables, max_diffs=5)
            if not all(r.ok for r in results):
                raise SwapRefused("the target differs from live: not swapped", results)
            conn.execute(text(f"DROP TABLE {quote_ident(target_schema)}.{CHECKPOINT_TABLE}"))
            conn.execute(text(f"ALTER SCHEMA {quote_ident(live_schema)} RENAME TO {quote_ident(replaced)}"))
            conn.execute(text(f"ALTER SCHEMA {quote_ident(target_schema)} RENAME TO {quote_ident(live_schema)}"))
    finally:
        engine.dispose()
    return replaced
