"""The PostgreSQL audit store passes the audit store's contract (its in-memory twin: tests/unit)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine

from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.rate_projector import RateProjector
from tests.contracts.audit_store import AuditStoreContract, AuditStoreLike
from tests.integration.test_rate_projection import T0, rate_event


class TestPostgresAuditStore(AuditStoreContract):
    @pytest.fixture
    def store(self, pg_schema: tuple[Engine, str]) -> AuditStoreLike:
        return AuditStore(pg_schema[0])

    @pytest.fixture
    def rate_ids(self, pg_schema: tuple[Engine, str]) -> tuple[uuid.UUID, uuid.UUID]:
        # The audit rows reference exchange_rate: store the two legs the contract's decisions name.
        usd, jpy = rate_event("USD", "1.0892", T0), rate_event("JPY", "161.87", T0)
        RateProjector(pg_schema[0]).project([usd, jpy])
        return usd.rate_id, jpy.rate_id
