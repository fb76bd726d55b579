"""The in-memory audit store passes the audit store's contract (its PostgreSQL twin: tests/integration)."""

from __future__ import annotations

import inspect
import uuid

import pytest

from ces.adapters.postgres.audit_store import AuditStore
from tests.contracts.audit_store import AuditStoreContract, AuditStoreLike, audited
from tests.fakes import FakeAuditStore, StoreDown


class TestFakeAuditStore(AuditStoreContract):
    @pytest.fixture
    def store(self) -> AuditStoreLike:
        return FakeAuditStore()

    @pytest.fixture
    def rate_ids(self) -> tuple[uuid.UUID, uuid.UUID]:
        return uuid.uuid4(), uuid.uuid4()


@pytest.mark.parametrize("method", ["record", "get", "get_audit"])
def test_the_fake_has_the_real_stores_signatures(method: str) -> None:
    # The use cases see the `DecisionStore` port and the gateway its `DecisionReads`; mypy checks the real
    # store against them, and this keeps the fake's signatures in step with the real one's.
    real = inspect.signature(getattr(AuditStore, method))
    fake = inspect.signature(getattr(FakeAuditStore, method))
    assert list(fake.parameters) == list(real.parameters)
    assert str(fake.return_annotation) == str(real.return_annotation)


def test_a_down_store_raises_and_records_nothing() -> None:
    store = FakeAuditStore(down=True)
    with pytest.raises(StoreDown):
        store.record([audited(uuid.uuid4(), [uuid.uuid4()])])
    assert store.decisions == {}
