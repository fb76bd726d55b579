"""A fresh replay target's deferred constraints: the audit tables' foreign keys and secondary indexes are
dropped before the load and added back after it, with what was dropped kept in `replay_deferred`.

Why: on a fresh target the three foreign-key triggers of `conversion_audit` were more than half of each
batch's database time (one lookup per row each, docs/replay.md). One validating join per constraint at
the end costs a fraction of that. The primary keys and the unique request id stay during the load:
`ON CONFLICT` (the dedupe of re-published decisions) needs them. The insert-only triggers stay too.

The definitions are read from `pg_catalog` after the migrations ran (`pg_get_constraintdef`,
`pg_get_indexdef`) and executed again as they were, so the finished schema is the migrated one.
Each dropped object is a row of `replay_deferred` (not a migration: replay targets only, like
`replay_checkpoint`), dropped in the same transaction as the row is written, and re-added in one
transaction with the row's deletion: a kill at any point leaves rows exactly for what is still missing.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from ces.adapters.postgres.verify import quote_ident
from ces.projections.replay.model import LOGGER, ReplayError

log = logging.getLogger(LOGGER)

DEFERRED_TABLE = "replay_deferred"
DEFERRED_TABLES = ("conversion_audit", "conversion_rejection")
MAX_NAMED = 10  # offending rows named in the error when a foreign key does not validate

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {DEFERRED_TABLE} (
    name text PRIMARY KEY, table_name text NOT NULL, kind text NOT NULL CHECK (kind IN ('foreign key', 'index')),
    definition text NOT NULL
)
"""

# Run with `search_path` = the target only, so the definitions name its tables unqualified.
_DEFERRABLE = """
SELECT c.conname, t.relname, 'foreign key', pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
WHERE t.relnamespace = to_regnamespace(current_schema()) AND t.relname = ANY(:tables) AND c.contype = 'f'
UNION ALL
SELECT i.relname, t.relname, 'index', pg_get_indexdef(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
WHERE t.relnamespace = to_regnamespace(current_schema()) AND t.relname = ANY(:tables)
    AND NOT x.indisunique AND NOT x.indisprimary
    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
ORDER BY 3, 2, 1
"""

_FOREIGN_KEY = re.compile(r"^FOREIGN KEY \((?P<cols>[^)]+)\) REFERENCES (?P<ref>[^(]+)\((?P<refcols>[^)]+)\)")


def deferred(conn: Connection, schema: str | None = None) -> list[tuple[str, str, str, str]]:
    """What is still dropped: (name, table, kind, definition); empty when the table does not exist. In
    `schema`, or else the one the connection's `search_path` resolves (the replay's own engine)."""
    table = DEFERRED_TABLE if schema is None else f"{quote_ident(schema)}.{DEFERRED_TABLE}"
    exists = conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table}).scalar()
    if not exists:
        return []
    rows = conn.execute(text(f"SELECT name, table_name, kind, definition FROM {table} ORDER BY kind DESC, name")).all()
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]


def defer(engine: Engine) -> int:
    """Drop the audit tables' foreign keys and secondary indexes, remembering them; one transaction."""
    with engine.begin() as conn:
        conn.execute(text(_CREATE))
        found = conn.execute(text(_DEFERRABLE), {"tables": list(DEFERRED_TABLES)}).all()
        for name, table, kind, definition in found:
            conn.execute(
                text(f"INSERT INTO {DEFERRED_TABLE} (name, table_name, kind, definition) VALUES (:n, :t, :k, :d)"),
                {"n": name, "t": table, "k": kind, "d": definition},
            )
            if kind == "foreign key":
                conn.execute(text(f"ALTER TABLE {quote_ident(table)} DROP CONSTRAINT {quote_ident(name)}"))
            else:
                conn.execute(text(f"DROP INDEX {quote_ident(name)}"))
    log.info("fresh target: %d foreign keys and indexes deferred until the load completes", len(found))
    return len(found)


def restore(engine: Engine) -> int:
    """Add back what `defer` dropped, one object per transaction (with its bookkeeping row's deletion).

    Indexes first, then foreign keys: `ADD CONSTRAINT ... NOT VALID` (no check) then `VALIDATE CONSTRAINT`
    (one join over the table). A foreign key that does not validate stops the replay with the offending
    rows named; the constraint stays listed in `replay_deferred`, so the target is never silently short of it.
    """
    with engine.connect() as conn:
        pending = deferred(conn)
    for name, table, kind, definition in pending:
        log.info("adding back %s %s on %s", kind, name, table)
        try:
            with engine.begin() as conn:
                if kind == "foreign key":
                    alter = f"ALTER TABLE {quote_ident(table)}"
                    conn.execute(text(f"{alter} ADD CONSTRAINT {quote_ident(name)} {definition} NOT VALID"))
                    conn.execute(text(f"{alter} VALIDATE CONSTRAINT {quote_ident(name)}"))
                else:
                    conn.execute(text(definition))
                conn.execute(text(f"DELETE FROM {DEFERRED_TABLE} WHERE name = :n"), {"n": name})
        except IntegrityError as exc:
            raise ReplayError(_violation(engine, table, name, definition)) from exc
    return len(pending)


def _violation(engine: Engine, table: str, name: str, definition: str) -> str:
    """The rows that break a foreign key, by primary key, for the error message."""
    match = _FOREIGN_KEY.match(definition)
    if match is None:
        return f"{table}: constraint {name} ({definition}) does not hold for the replayed rows"
    cols = [c.strip() for c in match["cols"].split(",")]
    refcols = [c.strip() for c in match["refcols"].split(",")]
    ref = match["ref"].strip()
    with engine.connect() as conn:
        keys = [
            str(k)
            for k in conn.execute(
                text(
                    "SELECT a.attname FROM pg_index x JOIN pg_attribute a ON a.attrelid = x.indrelid "
                    "AND a.attnum = ANY(x.indkey) WHERE x.indrelid = to_regclass(:t) AND x.indisprimary "
                    "ORDER BY a.attnum"
                ),
                {"t": table},
            ).scalars()
        ]
        shown = list(dict.fromkeys(keys + cols))
        present = " AND ".join(f"t.{c} IS NOT NULL" for c in cols)
        join = " AND ".join(f"r.{rc} = t.{c}" for c, rc in zip(cols, refcols, strict=True))
        where = f"{present} AND NOT EXISTS (SELECT 1 FROM {ref} r WHERE {join})"
        count = conn.execute(text(f"SELECT count(*) FROM {quote_ident(table)} t WHERE {where}")).scalar_one()
        rows = conn.execute(
            text(
                f"SELECT {', '.join(f't.{c}' for c in shown)} FROM {quote_ident(table)} t WHERE {where} "
                f"ORDER BY {', '.join(f't.{c}' for c in shown)} LIMIT {MAX_NAMED}"
            )
        ).all()
    named = "; ".join(", ".join(f"{c}={v}" for c, v in zip(shown, row, strict=True)) for row in rows)
    return (
        f"{table}: {count} replayed rows break {name} ({definition}), e.g. {named}. "
        f"The target is left without that constraint (listed in {DEFERRED_TABLE}); it must not be swapped in. "
        "Check the topics (an audit naming a rate that rates-fetched does not hold), then --restart"
    )
