"""Baseline: the bookkeeping table that makes every projection idempotent.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A projection inserts its row and (projection, event_id) here in one transaction: a redelivered
    # or replayed event hits the primary key and has no second effect.
    op.create_table(
        "processed_event",
        sa.Column("projection", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("projection", "event_id"),
    )


def downgrade() -> None:
    op.drop_table("processed_event")
