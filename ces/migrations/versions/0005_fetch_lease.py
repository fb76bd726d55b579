"""fetch_lease: one rate fetch per provider per interval across every worker, kept in PostgreSQL.

The lease is operational state, not history: it is the one mutable table, updated in place. It lives
in PostgreSQL (not Redis) so that the rule holds whatever the cache does, and it reads the database's
clock, so workers with skewed clocks still agree on when a lease has expired.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE fetch_lease (
            provider    text PRIMARY KEY,
            holder      uuid NOT NULL,
            claimed_at  timestamptz NOT NULL,
            expires_at  timestamptz NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE fetch_lease")
