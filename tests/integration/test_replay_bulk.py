"""The replay's bulk (COPY) write of decisions against the real PostgreSQL: exactly the rows the live
`AuditStore.record` writes for the same batches, the same first-decision-stands rule within and across
batches, and a refused row failing the whole batch (rows and checkpoint) so the replay retries one by one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy import Engine, text

from ces.adapters.postgres.audit_rows import BATCH_SLICE, audited_batch, audited_rows
from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.bulk_audit import copy_decisions
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.replay_target import PostgresReplayTarget, bulk_writers, create_checkpoint_table
from ces.adapters.postgres.verify import PROJECTION_TABLES, verify
from ces.cli.replay_view import LogProgress
from ces.events.conversions import ConversionAudited, ConversionRejected, Decision
from ces.events.rates import RateFetched
from ces.projections.replay import (
    PHASES,
    Partition,
    PhaseReport,
    Prepared,
    PreparedBatch,
    Replay,
    ReplayOptions,
    Written,
)
from ces.settings import Settings
from tests.integration.conftest import migrated_schema
from tests.integration.test_audit_store import audited, rejected
from tests.integration.test_rate_projection import T0, rate_event

TP = Partition("conversions-audited", 0)


@pytest.fixture
def bulk_schema(settings: Settings, unique: str) -> Iterator[tuple[Engine, str]]:
    schema = f"test_{unique}_bulk"
    with migrated_schema(settings, schema, owner=True) as engine:
        yield engine, schema


def cross(request_id: uuid.UUID, first: uuid.UUID, second: uuid.UUID) -> ConversionAudited:
    return audited(request_id, first).model_copy(
        update={
            "rate_ids": [first, second],
            "rate_kind": "cross",
            "target_currency": "JPY",
            "rate_value": Decimal("148.61375321336760"),  # a trailing zero: the stored scale must keep it
            "output_amount": Decimal("14847"),
        }
    )


def awkward(request_id: uuid.UUID) -> ConversionRejected:
    # Every character COPY's text format escapes, and some it does not need to.
    message = "tab\there, newline\nthere, CR\r, backslash \\N \\t, quotes ' \", unicode é € 💶"
    return rejected(request_id).model_copy(update={"message": message})


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM conversion_request), (SELECT count(*) FROM conversion_audit), "
                "(SELECT count(*) FROM conversion_rejection)"
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def from_bytes(decision: Decision) -> Decision | Prepared:
    """An audit as the replay reads it from its topic: its COPY lines straight from its bytes."""
    if isinstance(decision, ConversionRejected):
        return decision
    prepared = audited_rows(decision.to_json())
    assert prepared is not None
    return prepared


@pytest.mark.parametrize("prepared", [False, True], ids=["decoded", "from-bytes"])
def test_the_bulk_path_writes_exactly_the_live_rows(
    pg_schema: tuple[Engine, str], bulk_schema: tuple[Engine, str], prepared: bool
) -> None:
    (live, live_schema), (bulk, bulk_name) = pg_schema, bulk_schema
    usd, jpy = rate_event("USD", "1.0892", T0), rate_event("JPY", "161.87", T0)
    a, b, c, d, e, f, g = (uuid.uuid4() for _ in range(7))
    key = uuid.uuid4()
    then = datetime(2001, 9, 11, 23, 59, 59, 999999, tzinfo=UTC)
    batches: list[list[Decision]] = [
        [
            audited(a, usd.rate_id),
            awkward(b),
            cross(c, usd.rate_id, jpy.rate_id),
            audited(d, usd.rate_id, output="1.00"),
            audited(d, usd.rate_id, output="2.00"),  # re-published in the same batch: the first stands
        ],
        [
            audited(a, usd.rate_id, output="9.99"),  # re-published later: the stored decision stands
            audited(b, usd.rate_id),  # a rejected request is never audited later
            rejected(e),
            # Who asked and the past instant priced at are columns of the audit too (a COPY left them out once).
            audited(f, usd.rate_id).model_copy(update={"requested_by": key, "as_of": then}),
            rejected(g).model_copy(update={"requested_by": key, "as_of": then}),
        ],
    ]
    for engine in (live, bulk):
        RateProjector(engine).project([usd, jpy])
    for batch in batches:
        AuditStore(live).record(batch)
        copy_decisions(bulk, [from_bytes(d) for d in batch] if prepared else batch)

    assert counts(bulk) == counts(live) == (7, 4, 3)
    with live.begin() as conn:
        results = verify(conn, live_schema, bulk_name, PROJECTION_TABLES["audit"], max_diffs=5)
    assert [(r.table, r.ok, r.diffs) for r in results] == [(r.table, True, []) for r in results]
    with bulk.connect() as conn:
        output, message = conn.execute(
            text(
                "SELECT (SELECT output_amount::text FROM conversion_audit WHERE request_id = :d), "
                "(SELECT message FROM conversion_rejection WHERE request_id = :b)"
            ),
            {"d": d, "b": b},
        ).one()
    assert (output, message) == ("1.00", awkward(b).message)
    with bulk.connect() as conn:
        carried = conn.execute(
            text(
                "SELECT (SELECT (requested_by, as_of) FROM conversion_audit WHERE request_id = :f)::text, "
                "(SELECT (requested_by, as_of) FROM conversion_rejection WHERE request_id = :g)::text"
            ),
            {"f": f, "g": g},
        ).one()
    assert carried[0] == carried[1] and str(key) in carried[0] and "2001-09-11" in carried[0]


def _rate_and_checkpoints(engine: Engine, schema: str) -> RateFetched:
    """A stored USD rate for the audits to reference, and the replay's checkpoint table."""
    usd = rate_event("USD", "1.0892", T0)
    RateProjector(engine).project([usd])
    with engine.begin() as conn:
        create_checkpoint_table(conn, schema)
    return usd


def as_batch(decisions: list[Decision], slice_size: int = BATCH_SLICE) -> list[Written]:
    """A batch as the replay reads it when its audits take the batch path (`audited_batch`): one item for them."""
    batch = audited_batch([d.to_json() for d in decisions if isinstance(d, ConversionAudited)], slice_size)
    assert batch is not None
    return [batch, *(d for d in decisions if isinstance(d, ConversionRejected))]


@pytest.mark.parametrize("slice_size", [BATCH_SLICE, 1, 2], ids=["one-piece", "pieces-of-1", "pieces-of-2"])
def test_the_batch_path_writes_exactly_the_live_rows(
    pg_schema: tuple[Engine, str], bulk_schema: tuple[Engine, str], slice_size: int
) -> None:
    # NULL as an empty field and times with their `Z` (audit_rows.audited_batch) are the same rows; a batch
    # meeting ids claimed before keeps only the newly claimed ones' audit lines.
    (live, live_schema), (bulk, bulk_name) = pg_schema, bulk_schema
    usd, jpy = rate_event("USD", "1.0892", T0), rate_event("JPY", "161.87", T0)
    a, b, c, d, e, f = (uuid.uuid4() for _ in range(6))
    key = uuid.uuid4()
    then = datetime(2001, 9, 11, 23, 59, 59, 999999, tzinfo=UTC)
    batches: list[list[Decision]] = [
        [
            audited(a, usd.rate_id),
            awkward(b),
            cross(c, usd.rate_id, jpy.rate_id),
            audited(d, usd.rate_id).model_copy(update={"requested_by": key, "as_of": then}),
        ],
        [
            audited(a, usd.rate_id, output="9.99"),  # re-published later: the stored decision stands
            audited(e, usd.rate_id).model_copy(update={"occurred_at": datetime(2024, 12, 31, tzinfo=UTC)}),
            cross(f, usd.rate_id, jpy.rate_id).model_copy(update={"as_of": then}),
        ],
    ]
    for engine in (live, bulk):
        RateProjector(engine).project([usd, jpy])
    for batch in batches:
        AuditStore(live).record(batch)
        copy_decisions(bulk, cast(list[Decision | Prepared | PreparedBatch], as_batch(batch, slice_size)))

    assert counts(bulk) == counts(live) == (6, 5, 1)
    with live.begin() as conn:
        results = verify(conn, live_schema, bulk_name, PROJECTION_TABLES["audit"], max_diffs=5)
    assert [(r.table, r.ok, r.diffs) for r in results] == [(r.table, True, []) for r in results]
    with bulk.connect() as conn:
        output = conn.execute(
            text("SELECT output_amount::text FROM conversion_audit WHERE request_id = :a"), {"a": a}
        ).scalar_one()
    assert output == "108.83"


@pytest.mark.parametrize("prepared", [False, True, "batch"], ids=["decoded", "from-bytes", "batch"])
def test_a_refused_row_fails_the_bulk_batch_and_the_replay_retries_one_by_one(
    settings: Settings, bulk_schema: tuple[Engine, str], prepared: bool | str
) -> None:
    engine, schema = bulk_schema
    usd = _rate_and_checkpoints(engine, schema)
    good, unknown_rate, later = (uuid.uuid4() for _ in range(3))
    events: list[Decision] = [audited(good, usd.rate_id), audited(unknown_rate, uuid.uuid4()), rejected(later)]

    batch: list[Written] = (
        as_batch(events) if prepared == "batch" else [from_bytes(e) for e in events] if prepared else list(events)
    )

    with pytest.raises(Exception, match="foreign key"):
        copy_decisions(engine, cast(list[Decision | Prepared | PreparedBatch], batch))
    assert counts(engine) == (0, 0, 0)  # nothing of the batch

    target = PostgresReplayTarget(settings.migration_database_dsn, schema, writers=bulk_writers())
    replay = Replay(ReplayOptions("audit", schema, "public"), cast(Any, None), target, LogProgress())
    report = PhaseReport("audit")
    try:
        replay._write(PHASES["audit"], batch, {TP: 3}, report)  # prepared ones are decoded for the retry
        assert target.load_checkpoints() == {TP: 3}
    finally:
        target.close()
    assert report.refused == 1
    assert counts(engine) == (2, 1, 1)


def test_a_batch_meeting_an_id_claimed_before_falls_back_to_the_claim_with_its_checkpoint(
    settings: Settings, bulk_schema: tuple[Engine, str]
) -> None:
    # The straight COPY into conversion_request fails whole on an id claimed by an earlier batch; the savepoint
    # undoes it, the staging claim decides row by row, and the batch's checkpoint still commits with its rows.
    engine, schema = bulk_schema
    usd = _rate_and_checkpoints(engine, schema)
    old, new, fresh = (uuid.uuid4() for _ in range(3))
    target = PostgresReplayTarget(settings.migration_database_dsn, schema, writers=bulk_writers())
    try:
        target.write("audit", [from_bytes(audited(old, usd.rate_id))], {TP: 1})
        assert counts(engine) == (1, 1, 0)
        again = [from_bytes(audited(new, usd.rate_id)), from_bytes(audited(old, usd.rate_id, output="9.99"))]
        target.write("audit", [*again, rejected(fresh)], {TP: 4})
        assert target.load_checkpoints() == {TP: 4}
    finally:
        target.close()
    assert counts(engine) == (3, 2, 1)
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT output_amount::text FROM conversion_audit WHERE request_id = :r"), {"r": old}
        )
        assert stored.scalars().all() == ["108.83"]  # the decision claimed first stands
