"""The rate projection's bulk write: COPY a batch straight in, else into a staging table and one INSERT ... SELECT.

`copied_insert`: a batch of rows none of which is stored yet (the backfill's, a new publication's) is COPYed
straight into `exchange_rate` under a savepoint; should any row hit a unique key, the savepoint is rolled
back (nothing of the batch stays) and the caller goes through `staged_insert`. A COPY that went through
inserted every row, which is what `staged_insert` would have done with them.
`staged_insert`: the statement semantics of a multi-row INSERT: rows go in in batch order, `ON CONFLICT DO
NOTHING` on every unique key (so the first of two rows sharing a key in the batch stands, and a row
already stored stands), and the ids inserted come back. Values are the rows' canonical texts (`RateRow`):
plain decimal text (every digit, the scale kept: PostgreSQL reads `0.00000010` as it reads the `1.0E-7`
psycopg2 would send), rfc3339 `...Z` instants. Runs in the caller's transaction; the staging rows go at its
COMMIT (or ROLLBACK).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from ces.adapters.postgres.copy_text import COPY_ESCAPES, copy_from
from ces.projections.rate_wire import RateRow

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS rate_stage (
    ord int NOT NULL, id uuid NOT NULL, base_currency text NOT NULL, target_currency text NOT NULL,
    rate_value numeric NOT NULL, provider_name text NOT NULL, published_at timestamptz NOT NULL,
    fetched_at timestamptz NOT NULL, fetch_id uuid NOT NULL, event_id uuid NOT NULL
) ON COMMIT DELETE ROWS
"""

_APPLY = """
INSERT INTO exchange_rate (id, base_currency, target_currency, rate_value, provider_name, published_at,
    fetched_at, fetch_id, event_id)
SELECT id, base_currency, target_currency, rate_value, provider_name, published_at, fetched_at, fetch_id,
    event_id
FROM pg_temp.rate_stage ORDER BY ord
ON CONFLICT DO NOTHING
RETURNING id::text
"""

# Revocations of any staged rate (the accepted rates of the batch are among them), this transaction's included.
_REVOKED = """
SELECT r.rate_id::text FROM exchange_rate_revocation r WHERE r.rate_id IN (SELECT id FROM pg_temp.rate_stage)
"""


_COPY_IN = (
    "COPY exchange_rate (id, base_currency, target_currency, rate_value, provider_name, published_at, fetched_at, "
    "fetch_id, event_id) FROM STDIN"
)
_UNIQUE_VIOLATION = "23505"


def _lines(rows: Sequence[RateRow], ordinal: bool) -> str:
    # Only the provider's name can hold a character COPY must escape: ids, codes, values and instants are
    # canonical text (the model validated them, or `read_row`'s pattern did).
    lines = [
        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4].translate(COPY_ESCAPES)}\t{r[5]}\t{r[6]}\t{r[7]}\t{r[8]}\n"
        for r in rows
    ]
    return "".join([f"{i}\t{line}" for i, line in enumerate(lines)] if ordinal else lines)


def copied_insert(conn: Connection, rows: Sequence[RateRow]) -> bool:
    """COPY the rows straight into `exchange_rate`: True when every row went in; False, nothing of them
    written, when one hit a unique key (a redelivery, a republication, two rows sharing a key)."""
    savepoint = conn.begin_nested()
    try:
        copy_from(conn, _COPY_IN, io.StringIO(_lines(rows, ordinal=False)))
    except IntegrityError as exc:
        savepoint.rollback()
        if getattr(exc.orig, "pgcode", None) != _UNIQUE_VIOLATION:
            raise  # a CHECK refused a row: as `staged_insert`'s statement would
        return False
    savepoint.commit()
    return True


def staged_insert(conn: Connection, rows: Sequence[RateRow]) -> set[str] | None:
    """Insert the rows (in order, skipping any that hits a unique key); returns the ids inserted (text), or
    None when every row was (so no two shared a key)."""
    conn.exec_driver_sql(_STAGE)
    copy_from(conn, "COPY pg_temp.rate_stage FROM STDIN", io.StringIO(_lines(rows, ordinal=True)))
    result = conn.exec_driver_sql(_APPLY)
    try:
        # The driver's tuples: SQLAlchemy's `Row` per returned id cost about as much as the COPY line.
        inserted = result.cursor.fetchall()
    finally:
        result.close()
    return None if len(inserted) == len(rows) else {i for (i,) in inserted}


def staged_revoked(conn: Connection) -> set[str]:
    """The staged rates that are revoked, as text (after `staged_insert`, in the same transaction)."""
    return set(conn.exec_driver_sql(_REVOKED).scalars())
