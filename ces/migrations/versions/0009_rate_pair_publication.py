"""exchange_rate: one index for the publication key and the pair lookups (was two).

The unique `exchange_rate_publication` (provider_name, base_currency, target_currency, published_at) and the
plain `exchange_rate_pair_published` (base_currency, target_currency, published_at DESC, fetched_at DESC)
become one unique index on the same four columns, pair first: (base_currency, target_currency,
published_at DESC, provider_name). A unique key is a set of columns, so it refuses exactly what the old one
refused; ordered pair first it serves every pair lookup the plain index served (ties on `published_at`,
only ever between providers, are sorted by `fetched_at` on top: an incremental sort of one or two rows),
and the publication lookups (all four columns). Every row written pays one index fewer: PostgreSQL's CPU per rate
row, the live projection's floor, falls by about a quarter (docs/rates.md, `benchmarks/rate_copy_floor.py`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A unique index, not a constraint: a constraint's columns cannot be DESC, and `DISTINCT ON (pair) ORDER BY
    # pair, published_at DESC` (the latest rate of every pair) needs them so (a backward scan orders the pair
    # descending too, and a sort of the whole table took 4x as long). `ON CONFLICT DO NOTHING` and COPY's
    # unique violation treat both alike.
    op.execute("ALTER TABLE exchange_rate DROP CONSTRAINT exchange_rate_publication")
    op.execute("DROP INDEX exchange_rate_pair_published")
    op.execute(
        "CREATE UNIQUE INDEX exchange_rate_publication ON exchange_rate "
        "(base_currency, target_currency, published_at DESC, provider_name)"
    )


def downgrade() -> None:
    op.execute(
        "CREATE INDEX exchange_rate_pair_published ON exchange_rate "
        "(base_currency, target_currency, published_at DESC, fetched_at DESC)"
    )
    op.execute("DROP INDEX exchange_rate_publication")
    op.execute(
        "ALTER TABLE exchange_rate ADD CONSTRAINT exchange_rate_publication "
        "UNIQUE (provider_name, base_currency, target_currency, published_at)"
    )
