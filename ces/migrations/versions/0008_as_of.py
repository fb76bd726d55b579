"""`as_of` on the audit and the rejections: the past instant a conversion was asked to be priced at.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: priced at the rates current when decided (every row before this migration). Adding a nullable
    # column without a default rewrites nothing, so the insert-only tables keep their rows as they were.
    op.execute("ALTER TABLE conversion_audit ADD COLUMN as_of timestamptz")
    op.execute("ALTER TABLE conversion_rejection ADD COLUMN as_of timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE conversion_rejection DROP COLUMN as_of")
    op.execute("ALTER TABLE conversion_audit DROP COLUMN as_of")
