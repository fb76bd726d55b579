"""SQLAlchemy Core tables of the projections (the schema itself is owned by the Alembic migrations)."""

from __future__ import annotations

from sqlalchemy import ARRAY, CHAR, Column, DateTime, ForeignKey, LargeBinary, MetaData, Numeric, Table, Text, Uuid

metadata = MetaData()

exchange_rate = Table(
    "exchange_rate",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("base_currency", CHAR(3), nullable=False),
    Column("target_currency", CHAR(3), nullable=False),
    Column("rate_value", Numeric(asdecimal=True), nullable=False),
    Column("provider_name", Text, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
    Column("fetch_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("recorded_at", DateTime(timezone=True)),
)

exchange_rate_revocation = Table(
    "exchange_rate_revocation",
    metadata,
    Column("rate_id", Uuid, ForeignKey("exchange_rate.id"), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("revoked_by", Text, nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=False),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("recorded_at", DateTime(timezone=True)),
)

conversion_request = Table(
    "conversion_request",
    metadata,
    Column("request_id", Uuid, primary_key=True),
    Column("outcome", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)

conversion_audit = Table(
    "conversion_audit",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("request_id", Uuid, nullable=False, unique=True),
    Column("rate_used_id", Uuid, nullable=False),
    Column("second_rate_id", Uuid),
    Column("rate_kind", Text, nullable=False),
    Column("base_currency", CHAR(3), nullable=False),
    Column("target_currency", CHAR(3), nullable=False),
    Column("input_amount", Numeric(asdecimal=True), nullable=False),
    Column("rate_value", Numeric(asdecimal=True), nullable=False),
    Column("margin", Numeric(asdecimal=True), nullable=False),
    Column("output_amount", Numeric(asdecimal=True), nullable=False),
    Column("converted_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True)),
    Column("requested_by", Uuid),
    Column("as_of", DateTime(timezone=True)),
)

conversion_rejection = Table(
    "conversion_rejection",
    metadata,
    Column("request_id", Uuid, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("rejected_at", DateTime(timezone=True), nullable=False),
    Column("requested_by", Uuid),
    Column("as_of", DateTime(timezone=True)),
)

api_key = Table(
    "api_key",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)
