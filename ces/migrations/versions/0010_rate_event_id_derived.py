"""exchange_rate: no unique index on `event_id`; its uniqueness follows from the primary key on `id`.

Every `RateFetched` CES writes carries `event_id = rate_fetched_event_id(rate_id)` (a name-based SHA-1 id
of "RateFetched|" + the rate id's text), and the rate projection, live and in a replay, refuses any other
(`underived_event_id`, dead-lettered). So every row holds the event id derived from its `id`, and two rows
with one `event_id` would be two ids with one derived id: a SHA-1 collision. The unique index checked that
again for every row at a cost of ~5 us of PostgreSQL's CPU a row, a quarter of the live projection's
database time (docs/rates.md, `benchmarks/rate_copy_floor.py`). `event_id` stays stored (every event's id
is recorded) and NOT NULL.

The upgrade first checks that every stored row holds its derived event id, and refuses to run otherwise
(rows written by other means than the projection would need a decision, not a silent loss of the key).
The downgrade adds the constraint back (it holds for any rows the projection wrote).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from ces.events.rates import rate_fetched_event_ids

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_CHUNK = 10_000


def upgrade() -> None:
    conn = op.get_bind()
    # Read in chunks by id (the primary key's order) rather than all at once: the table holds the history.
    after: str | None = None
    while True:
        where = "" if after is None else "WHERE id > CAST(:after AS uuid)"
        rows = conn.execute(
            text(f"SELECT id::text, event_id::text FROM exchange_rate {where} ORDER BY id LIMIT :n"),
            {"after": after, "n": _CHUNK},
        ).all()
        if not rows:
            break
        derived = rate_fetched_event_ids([rate_id for rate_id, _ in rows])
        wrong = [(r, e, d) for (r, e), d in zip(rows, derived, strict=True) if e != d]
        if wrong:
            rate_id, event_id, expected = wrong[0]
            raise RuntimeError(
                f"exchange_rate holds rows whose event_id is not derived from their id (rate {rate_id}: event_id "
                f"{event_id}, derived {expected}, and maybe more): the unique key on event_id is what keeps them "
                "unique, so migration 0010 does not drop it"
            )
        after = rows[-1][0]
    op.execute("ALTER TABLE exchange_rate DROP CONSTRAINT exchange_rate_event_id_key")


def downgrade() -> None:
    op.execute("ALTER TABLE exchange_rate ADD CONSTRAINT exchange_rate_event_id_key UNIQUE (event_id)")
