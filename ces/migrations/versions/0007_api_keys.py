"""api_key (gateway API keys, by hash) and who asked: `requested_by` on the audit and the rejections.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Keys are revoked, never deleted: an audit's `requested_by` keeps resolving to a name.
    op.execute(
        """
        CREATE TABLE api_key (
            id          uuid PRIMARY KEY,
            name        text NOT NULL UNIQUE CHECK (name <> ''),
            key_hash    bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
            scopes      text[] NOT NULL CHECK (cardinality(scopes) > 0),
            created_at  timestamptz NOT NULL,
            revoked_at  timestamptz
        )
        """
    )
    # NULL for rows decided before keys existed and for requests produced straight to Kafka (no key).
    # No foreign key: `ces replay` rebuilds the audit into a fresh schema from the topics alone, and keys
    # are not events; `ces keys list` resolves an id to its name.
    op.execute("ALTER TABLE conversion_audit ADD COLUMN requested_by uuid")
    op.execute("ALTER TABLE conversion_rejection ADD COLUMN requested_by uuid")


def downgrade() -> None:
    op.execute("ALTER TABLE conversion_rejection DROP COLUMN requested_by")
    op.execute("ALTER TABLE conversion_audit DROP COLUMN requested_by")
    op.execute("DROP TABLE api_key")
