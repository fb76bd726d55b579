"""exchange_rate_revocation: rates withdrawn by an operator, insert-only; the rate rows themselves stay.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per revoked rate (the first revocation stands). The rate row is kept, not deleted, so
    # every audit that used it still resolves; lookups skip revoked rows.
    op.execute(
        """
        CREATE TABLE exchange_rate_revocation (
            rate_id      uuid PRIMARY KEY REFERENCES exchange_rate (id),
            reason       text NOT NULL CHECK (reason <> ''),
            revoked_by   text NOT NULL CHECK (revoked_by <> ''),
            revoked_at   timestamptz NOT NULL,
            event_id     uuid NOT NULL UNIQUE,
            recorded_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE TRIGGER exchange_rate_revocation_insert_only BEFORE UPDATE OR DELETE ON exchange_rate_revocation "
        "FOR EACH ROW EXECUTE FUNCTION ces_refuse_mutation()"
    )
    op.execute(
        "CREATE TRIGGER exchange_rate_revocation_no_truncate BEFORE TRUNCATE ON exchange_rate_revocation "
        "FOR EACH STATEMENT EXECUTE FUNCTION ces_refuse_mutation()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE exchange_rate_revocation")
