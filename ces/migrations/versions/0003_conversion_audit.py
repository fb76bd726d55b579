"""conversion_audit and conversion_rejection: one insert-only decision per request_id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("conversion_request", "conversion_audit", "conversion_rejection")


def upgrade() -> None:
    # The bookkeeping row: one per request_id whatever the outcome, written in the same transaction as
    # the audit or the rejection. Its primary key is what makes a request have exactly one decision.
    op.execute(
        """
        CREATE TABLE conversion_request (
            request_id   uuid PRIMARY KEY,
            outcome      text NOT NULL CHECK (outcome IN ('audited', 'rejected')),
            decided_at   timestamptz NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE conversion_audit (
            id              uuid PRIMARY KEY,
            request_id      uuid NOT NULL UNIQUE REFERENCES conversion_request (request_id),
            rate_used_id    uuid NOT NULL REFERENCES exchange_rate (id),
            second_rate_id  uuid REFERENCES exchange_rate (id),
            rate_kind       text NOT NULL CHECK (rate_kind IN ('direct', 'inverse', 'cross')),
            base_currency   char(3) NOT NULL,
            target_currency char(3) NOT NULL,
            input_amount    numeric NOT NULL CHECK (input_amount > 0),
            rate_value      numeric NOT NULL CHECK (rate_value > 0),
            margin          numeric NOT NULL CHECK (margin >= 0 AND margin < 1),
            output_amount   numeric NOT NULL CHECK (output_amount >= 0),
            converted_at    timestamptz NOT NULL,
            recorded_at     timestamptz NOT NULL DEFAULT now(),
            CHECK ((rate_kind = 'cross') = (second_rate_id IS NOT NULL))
        )
        """
    )
    op.execute("CREATE INDEX conversion_audit_converted_at ON conversion_audit (converted_at)")
    op.execute(
        """
        CREATE TABLE conversion_rejection (
            request_id   uuid PRIMARY KEY REFERENCES conversion_request (request_id),
            reason       text NOT NULL,
            message      text NOT NULL,
            rejected_at  timestamptz NOT NULL
        )
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_insert_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ces_refuse_mutation()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ces_refuse_mutation()"
        )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
