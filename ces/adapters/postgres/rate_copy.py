"""The rate projection's bulk write: COPY a batch into a session-local staging table, one INSERT ... SELECT.

Same statement semantics as the multi-row INSERT it replaces: rows go in in batch order, `ON CONFLICT DO
NOTHING` on every unique key (so the first of two rows sharing a key in the batch stands, and a row
already stored stands), and the ids inserted come back. Values are the rows' canonical texts (`RateRow`):
plain decimal text (every digit, the scale kept: PostgreSQL reads `0.00000010` as it reads the `1.0E-7`
psycopg2 would send), rfc3339 `...Z` instants. Runs in the caller's transaction; the staging rows go at its
COMMIT (or ROLLBACK).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import Connection

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


def staged_insert(conn: Connection, rows: Sequence[RateRow]) -> set[str] | None:
    """Insert the rows (in order, skipping any that hits a unique key); returns the ids inserted (text), or
    None when every row was (the usual batch: nothing to look up then)."""
    # Only the provider's name can hold a character COPY must escape: ids, codes, values and instants are
    # canonical text (the model validated them, or `read_row`'s pattern did).
    text = "".join(
        [
            f"{i}\t{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4].translate(COPY_ESCAPES)}\t{r[5]}\t{r[6]}\t{r[7]}\t{r[8]}\n"
            for i, r in enumerate(rows)
        ]
    )
    conn.exec_driver_sql(_STAGE)
    copy_from(conn, "COPY pg_temp.rate_stage FROM STDIN", io.StringIO(text))
    result = conn.exec_driver_sql(_APPLY)
    try:
        # The driver's tuples: SQLAlchemy's `Row` per returned id cost about as much as the COPY line.
        inserted = result.cursor.fetchall()
    finally:
        result.close()
    return None if len(inserted) == len(rows) else {i for (i,) in inserted}


def staged_revoked(conn: Connection) -> set[UUID]:
    """The staged rates that are revoked (after `staged_insert`, in the same transaction)."""
    return {UUID(i) for i in conn.exec_driver_sql(_REVOKED).scalars()}
