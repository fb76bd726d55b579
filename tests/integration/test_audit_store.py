"""One decision per request_id in PostgreSQL, whatever arrives later, and identical when re-read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, text

from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.rate_projector import RateProjector
from ces.events.conversions import ConversionAudited, ConversionRejected, audit_id_for, result_event_id
from tests.integration.test_rate_projection import T0, rate_event

NOW = datetime(2024, 3, 15, 16, 0, 0, 123456, tzinfo=UTC)


def audited(request_id: uuid.UUID, rate_id: uuid.UUID, output: str = "108.83") -> ConversionAudited:
    return ConversionAudited(
        event_id=result_event_id("ConversionAudited", request_id),
        occurred_at=NOW,
        audit_id=audit_id_for(request_id),
        request_id=request_id,
        rate_id=rate_id,
        rate_ids=[rate_id],
        rate_kind="direct",
        base_currency="EUR",
        target_currency="USD",
        input_amount=Decimal("100.00"),
        rate_value=Decimal("1.0892"),
        margin=Decimal("0.0010"),
        output_amount=Decimal(output),
        converted_at=NOW,
    )


def rejected(request_id: uuid.UUID) -> ConversionRejected:
    return ConversionRejected(
        event_id=result_event_id("ConversionRejected", request_id),
        occurred_at=NOW,
        request_id=request_id,
        reason="no_rate",
        message="no rate for EUR->USD",
        rejected_at=NOW,
    )


def test_first_decision_stands_and_is_returned_identically(pg_schema: tuple[Engine, str]) -> None:
    engine, _ = pg_schema
    usd = rate_event("USD", "1.0892", T0)
    RateProjector(engine).project([usd])
    store = AuditStore(engine)
    a, b = uuid.uuid4(), uuid.uuid4()

    first = store.record([audited(a, usd.rate_id), rejected(b)])
    assert [type(d) for d in first] == [ConversionAudited, ConversionRejected]
    # Later: a retry of `a` computed with another amount, and `b` now audited. Neither changes anything.
    later = store.record([audited(a, usd.rate_id, output="1.00"), audited(b, usd.rate_id)])
    assert later == first
    assert [d.to_json() for d in later] == [d.to_json() for d in first]  # byte-identical on the wire
    with engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM conversion_audit), (SELECT count(*) FROM conversion_rejection), "
                "(SELECT count(*) FROM conversion_request)"
            )
        ).one()
    assert tuple(counts) == (1, 1, 2)


def test_duplicates_inside_one_batch_are_one_decision(pg_schema: tuple[Engine, str]) -> None:
    engine, _ = pg_schema
    usd = rate_event("USD", "1.0892", T0)
    RateProjector(engine).project([usd])
    rid = uuid.uuid4()
    result = AuditStore(engine).record([audited(rid, usd.rate_id), audited(rid, usd.rate_id, output="2.00")])
    assert len(result) == 2 and result[0] == result[1]
    assert AuditStore(engine).get_audit(audit_id_for(rid)) == result[0]
