"""exchange_rate: the immutable rate history, insert-only by trigger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One trigger function for every insert-only table: UPDATE, DELETE and TRUNCATE are refused by the
    # database itself, whoever connects.
    op.execute(
        """
        CREATE FUNCTION ces_refuse_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is insert-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )
    # rate_value is unconstrained NUMERIC: it stores exactly the provider's digits, whatever their
    # scale (NUMERIC(15,8) would keep 3 significant digits of 0.00001234).
    op.execute(
        """
        CREATE TABLE exchange_rate (
            id              uuid PRIMARY KEY,
            base_currency   char(3) NOT NULL CHECK (base_currency ~ '^[A-Z]{3}$'),
            target_currency char(3) NOT NULL CHECK (target_currency ~ '^[A-Z]{3}$'),
            rate_value      numeric NOT NULL CHECK (rate_value > 0),
            provider_name   text NOT NULL,
            published_at    timestamptz NOT NULL,
            fetched_at      timestamptz NOT NULL,
            fetch_id        uuid NOT NULL,
            event_id        uuid NOT NULL UNIQUE,
            recorded_at     timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT exchange_rate_publication UNIQUE
                (provider_name, base_currency, target_currency, published_at),
            CHECK (base_currency <> target_currency)
        )
        """
    )
    op.execute(
        "CREATE INDEX exchange_rate_pair_published ON exchange_rate "
        "(base_currency, target_currency, published_at DESC, fetched_at DESC)"
    )
    for when in ("UPDATE OR DELETE", "TRUNCATE"):
        level = "ROW" if when != "TRUNCATE" else "STATEMENT"
        name = "exchange_rate_insert_only" if level == "ROW" else "exchange_rate_no_truncate"
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {when} ON exchange_rate "
            f"FOR EACH {level} EXECUTE FUNCTION ces_refuse_mutation()"
        )


def downgrade() -> None:
    op.execute("DROP TABLE exchange_rate")
    op.execute("DROP FUNCTION ces_refuse_mutation()")
