"""Comparing a rebuilt schema with the live one: per-table row counts, content checksums and row diffs.

Canonical row text: `ROW(col, ...)::text` over the table's columns in `tables.py` order, leaving out
columns that legitimately differ between a live write and a replayed one (`recorded_at`, the database
clock at insert). PostgreSQL's record output quotes and escapes every value and writes NULL as an empty
field, so distinct rows never share a text; the session is pinned to `TimeZone=UTC` and
`DateStyle=ISO, YMD` so timestamps render the same whoever runs the check. Numerics render with their
stored scale: `100.00` and `100.0` differ, on purpose (the audit must keep the exact digits it published).

Checksum: the sum, as `numeric`, of the two 64-bit halves of each row's md5, per table. A sum does not
depend on row order, so it needs no sort and no giant `string_agg` value (PostgreSQL caps a text value at
1 GB: about 4 million audit rows as text). Counts are compared as well, so a missing row never cancels
out. On a mismatch, a full outer join on the primary key names the first differing rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console
from rich.table import Table as RichTable
from sqlalchemy import Connection, Table, text

from ces.adapters.postgres.tables import (
    conversion_audit,
    conversion_rejection,
    conversion_request,
    exchange_rate,
    exchange_rate_revocation,
)

# Which tables each projection owns; `ces replay --projection` uses the same names.
PROJECTION_TABLES: dict[str, tuple[Table, ...]] = {
    "rates": (exchange_rate, exchange_rate_revocation),
    "audit": (conversion_request, conversion_audit, conversion_rejection),
}
PROJECTION_TABLES["all"] = PROJECTION_TABLES["rates"] + PROJECTION_TABLES["audit"]

# Set by the database when the row is inserted (DEFAULT now()), so never equal between live and replay.
IGNORED_COLUMNS = frozenset({"recorded_at"})

DiffKind = Literal["missing in target", "missing in live", "differs"]


class VerifyError(RuntimeError):
    """The comparison cannot be made (a schema or a table is missing)."""


@dataclass(frozen=True)
class Summary:
    rows: int
    checksum: str  # hex md5 over count and the two sums: equal summaries mean equal tables


@dataclass(frozen=True)
class RowDiff:
    key: str
    kind: DiffKind
    # For "differs": (column, live text, target text) of every column that differs.
    columns: tuple[tuple[str, str | None, str | None], ...] = ()


@dataclass
class TableResult:
    table: str
    live: Summary
    target: Summary
    diffs: list[RowDiff] = field(default_factory=list)
    differing_rows: int = 0

    @property
    def ok(self) -> bool:
        return self.live == self.target


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def compared_columns(table: Table) -> list[str]:
    return [c.name for c in table.columns if c.name not in IGNORED_COLUMNS]


def primary_key(table: Table) -> str:
    keys = [c.name for c in table.primary_key.columns]
    if len(keys) != 1:  # every compared table has a one-column key; the diff join relies on it
        raise VerifyError(f"{table.name}: expected a single-column primary key, found {keys}")
    return keys[0]


def _row_text(table: Table, alias: str) -> str:
    return "ROW(" + ", ".join(f"{alias}.{quote_ident(c)}" for c in compared_columns(table)) + ")::text"


def pin_session(conn: Connection) -> None:
    """Make value rendering independent of the server's and the role's defaults (for this transaction)."""
    conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
    conn.execute(text("SET LOCAL DateStyle = 'ISO, YMD'"))


def missing_tables(conn: Connection, schema: str, tables: Sequence[Table]) -> list[str]:
    present = set(
        conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
        ).scalars()
    )
    return [t.name for t in tables if t.name not in present]


def summarize(conn: Connection, schema: str, table: Table) -> Summary:
    # md5 -> two 64-bit halves -> bigint (signed, fine for a sum) -> numeric (a sum of bigints overflows).
    row = conn.execute(
        text(
            "SELECT count(*), "
            "coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0), "
            "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0) "
            f"FROM (SELECT md5({_row_text(table, 't')}) AS h "
            f"FROM {quote_ident(schema)}.{quote_ident(table.name)} t) s"
        )
    ).one()
    rows, first, second = int(row[0]), row[1], row[2]
    return Summary(rows, hashlib.md5(f"{rows}:{first}:{second}".encode()).hexdigest())


def row_diffs(
    conn: Connection, live_schema: str, target_schema: str, table: Table, limit: int
) -> tuple[int, list[RowDiff]]:
    """How many rows differ, and the first `limit` of them by primary key."""
    pk = quote_ident(primary_key(table))
    name = quote_ident(table.name)
    joined = (
        f"FROM (SELECT t.{pk} AS k, md5({_row_text(table, 't')}) AS h FROM {quote_ident(live_schema)}.{name} t) l "
        f"FULL JOIN (SELECT t.{pk} AS k, md5({_row_text(table, 't')}) AS h "
        f"FROM {quote_ident(target_schema)}.{name} t) r ON l.k = r.k "
        "WHERE l.h IS DISTINCT FROM r.h"
    )
    total = int(conn.execute(text(f"SELECT count(*) {joined}")).scalar_one())
    rows = conn.execute(
        text(
            f"SELECT coalesce(l.k, r.k)::text AS k, l.h IS NULL AS no_live, r.h IS NULL AS no_target {joined} "
            "ORDER BY coalesce(l.k, r.k) LIMIT :n"
        ),
        {"n": limit},
    ).all()
    diffs: list[RowDiff] = []
    changed = [k for k, no_live, no_target in rows if not no_live and not no_target]
    values = _column_values(conn, live_schema, target_schema, table, changed) if changed else {}
    for key, no_live, no_target in rows:
        if no_target:
            diffs.append(RowDiff(key, "missing in target"))
        elif no_live:
            diffs.append(RowDiff(key, "missing in live"))
        else:
            live, target = values[key]
            columns = tuple(
                (column, live[column], target[column])
                for column in compared_columns(table)
                if live[column] != target[column]
            )
            diffs.append(RowDiff(key, "differs", columns))
    return total, diffs


def _column_values(
    conn: Connection, live_schema: str, target_schema: str, table: Table, keys: list[str]
) -> dict[str, tuple[dict[str, str | None], dict[str, str | None]]]:
    columns = compared_columns(table)
    pk = quote_ident(primary_key(table))
    select_list = ", ".join(f"t.{quote_ident(c)}::text" for c in columns)
    found: dict[str, dict[str, dict[str, str | None]]] = {key: {} for key in keys}
    for side, schema in (("live", live_schema), ("target", target_schema)):
        for row in conn.execute(
            text(
                f"SELECT t.{pk}::text, {select_list} FROM {quote_ident(schema)}.{quote_ident(table.name)} t "
                f"WHERE t.{pk}::text = ANY(:keys)"
            ),
            {"keys": keys},
        ):
            found[row[0]][side] = dict(zip(columns, row[1:], strict=True))
    return {key: (sides["live"], sides["target"]) for key, sides in found.items()}


def verify(
    conn: Connection,
    live_schema: str,
    target_schema: str,
    tables: Sequence[Table],
    *,
    max_diffs: int = 20,
) -> list[TableResult]:
    """Compare `tables` of the two schemas (read-only). Runs in the caller's transaction, so a caller holding
    locks (the swap) compares a state nobody can change underneath."""
    pin_session(conn)
    for schema in (live_schema, target_schema):
        missing = missing_tables(conn, schema, tables)
        if missing:
            raise VerifyError(f"schema {schema!r} has no table {', '.join(missing)}")
    results = []
    for table in tables:
        result = TableResult(table.name, summarize(conn, live_schema, table), summarize(conn, target_schema, table))
        if not result.ok:
            result.differing_rows, result.diffs = row_diffs(conn, live_schema, target_schema, table, max_diffs)
        results.append(result)
    return results


def render(results: Sequence[TableResult], live_schema: str, target_schema: str, console: Console) -> None:
    """A table of per-table results, then one plain line per differing row (greppable, never wrapped)."""
    summary = RichTable(title=f"verify: live {live_schema!r} vs target {target_schema!r}")
    for heading in ("table", "live rows", "target rows", "live checksum", "target checksum", "result"):
        summary.add_column(heading, justify="right" if "rows" in heading else "left", no_wrap=True)
    for r in results:
        summary.add_row(
            r.table,
            f"{r.live.rows:,}",
            f"{r.target.rows:,}",
            r.live.checksum[:16],
            r.target.checksum[:16],
            "[green]equal[/green]" if r.ok else f"[red]DIFFERS ({r.differing_rows:,} rows)[/red]",
        )
    console.print(summary)
    for r in results:
        if r.ok:
            continue
        shown = f"first {len(r.diffs)} of " if len(r.diffs) < r.differing_rows else ""
        console.print(f"{r.table}: {shown}{r.differing_rows:,} differing rows, by primary key:", markup=False)
        for d in r.diffs:
            line = f"  {r.table} {primary_key_name(r.table)}={d.key}: {d.kind}"
            if d.columns:
                line += "; " + "; ".join(f"{c}: live={lv!r} target={tv!r}" for c, lv, tv in d.columns)
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def primary_key_name(table_name: str) -> str:
    for tables in PROJECTION_TABLES.values():
        for table in tables:
            if table.name == table_name:
                return primary_key(table)
    raise VerifyError(f"unknown table {table_name!r}")
