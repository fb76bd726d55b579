"""The audit store's contract: the assertions every implementation (in-memory fake, PostgreSQL) must pass.

Subclass `AuditStoreContract` as `Test...` and provide two fixtures: `store` (an empty store) and
`rate_ids` (two rate ids the store accepts: real `exchange_rate` rows for PostgreSQL, whose foreign keys
refuse others). The fake half runs in tests/unit, the real half in tests/integration.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

import pytest

from ces.events.conversions import ConversionAudited, ConversionRejected, audit_id_for, result_event_id

Decision = ConversionAudited | ConversionRejected

# Microseconds on purpose: a store that truncated time would re-publish a different event.
NOW = datetime(2024, 3, 15, 16, 0, 0, 123456, tzinfo=UTC)


class AuditStoreLike(Protocol):
    def record(self, decisions: Sequence[Decision]) -> list[Decision]: ...

    def get(self, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Decision]: ...

    def get_audit(self, audit_id: uuid.UUID) -> ConversionAudited | None: ...


def audited(
    request_id: uuid.UUID, rate_ids: Sequence[uuid.UUID], *, output: str = "108.81", amount: str = "100.00"
) -> ConversionAudited:
    """An audit as the decider builds it (`occurred_at == converted_at`, ids derived from the request id)."""
    return ConversionAudited(
        event_id=result_event_id("ConversionAudited", request_id),
        occurred_at=NOW,
        audit_id=audit_id_for(request_id),
        request_id=request_id,
        rate_id=rate_ids[0],
        rate_ids=list(rate_ids),
        rate_kind="direct" if len(rate_ids) == 1 else "cross",
        base_currency="EUR" if len(rate_ids) == 1 else "USD",
        target_currency="USD" if len(rate_ids) == 1 else "JPY",
        input_amount=Decimal(amount),
        rate_value=Decimal("1.0892") if len(rate_ids) == 1 else Decimal("148.6136614028644"),
        margin=Decimal("0.0010"),
        output_amount=Decimal(output),
        converted_at=NOW,
    )


def rejected(request_id: uuid.UUID, reason: str = "no_rate") -> ConversionRejected:
    return ConversionRejected(
        event_id=result_event_id("ConversionRejected", request_id),
        occurred_at=NOW,
        request_id=request_id,
        reason=reason,
        message="no rate for EUR->USD",
        rejected_at=NOW,
    )


def wire(decisions: Sequence[Decision]) -> list[bytes]:
    return [d.to_json() for d in decisions]


class AuditStoreContract:
    @pytest.fixture
    def store(self) -> AuditStoreLike:
        raise NotImplementedError("a subclass provides the store under test")

    @pytest.fixture
    def rate_ids(self) -> tuple[uuid.UUID, uuid.UUID]:
        raise NotImplementedError("a subclass provides two rate ids the store accepts")

    def test_an_empty_batch_records_nothing(self, store: AuditStoreLike) -> None:
        assert store.record([]) == []
        assert store.get([uuid.uuid4()]) == {}

    def test_new_decisions_stand_as_given_in_input_order(
        self, store: AuditStoreLike, rate_ids: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        batch: list[Decision] = [
            audited(uuid.uuid4(), rate_ids[:1]),
            rejected(uuid.uuid4()),
            audited(uuid.uuid4(), rate_ids),
        ]
        assert wire(store.record(batch)) == wire(batch)

    def test_a_decision_this_call_recorded_is_returned_as_the_very_object_given(
        self, store: AuditStoreLike, rate_ids: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        # The conversion handler tells a new decision from a stored one (re-published, marked) this way.
        (earlier,) = store.record([audited(uuid.uuid4(), rate_ids[:1])])
        batch: list[Decision] = [audited(earlier.request_id, rate_ids[:1]), rejected(uuid.uuid4())]
        again, new = store.record(batch)
        assert new is batch[1] and again is not batch[0]

    def test_the_first_decision_stands_and_is_returned_identically(
        self, store: AuditStoreLike, rate_ids: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        a, b = uuid.uuid4(), uuid.uuid4()
        first = store.record([audited(a, rate_ids[:1]), rejected(b)])
        # A retry of `a` computed differently and `b` now audited, in the other order: nothing changes,
        # and the answer follows this call's order.
        later = store.record([audited(b, rate_ids[:1]), audited(a, rate_ids[:1], output="1.00")])
        assert later == [first[1], first[0]]
        assert wire(later) == [first[1].to_json(), first[0].to_json()]  # byte-identical on the wire

    def test_duplicates_in_one_call_are_one_decision_the_first(
        self, store: AuditStoreLike, rate_ids: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        rid = uuid.uuid4()
        first = audited(rid, rate_ids[:1])
        result = store.record([first, rejected(rid), audited(rid, rate_ids[:1], output="2.00")])
        assert wire(result) == wire([first, first, first])
        assert store.get([rid]) == {rid: first}

    def test_new_and_earlier_decisions_mixed_keep_the_input_order(
        self, store: AuditStoreLike, rate_ids: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        earlier = rejected(uuid.uuid4(), "stale_rate")
        store.record([earlier])
        new1, new2 = audited(uuid.uuid4(), rate_ids), rejected(uuid.uuid4())
        result = store.record([new1, audited(earlier.request_id, rate_ids[:1]), new2])
        assert wire(result) == wire([new1, earlier, new2])

    def test_get_returns_what_stands_and_omits_unknown_ids(
        self, store: AuditStoreLike, rate_ids: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        a, b, unknown = audited(uuid.uuid4(), rate_ids), rejected(uuid.uuid4()), uuid.uuid4()
        store.record([a, b])
        found = store.get([a.request_id, unknown, b.request_id])
        assert found == {a.request_id: a, b.request_id: b}
        assert wire([found[a.request_id]]) == wire([a])

    def test_get_audit_finds_audits_only(self, store: AuditStoreLike, rate_ids: tuple[uuid.UUID, uuid.UUID]) -> None:
        a, b = audited(uuid.uuid4(), rate_ids), rejected(uuid.uuid4())
        store.record([a, b])
        assert store.get_audit(a.audit_id) == a
        assert store.get_audit(audit_id_for(b.request_id)) is None  # a rejection has no audit row
        assert store.get_audit(uuid.uuid4()) is None
