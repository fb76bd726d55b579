"""The replay's building blocks against the real PostgreSQL: a batch's checkpoint commits with its rows or not
at all, poison and refused events are counted and skipped, and verify compares exact digits while
ignoring `recorded_at`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy import Engine, text

from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.replay_target import (
    Checkpoints,
    PostgresReplayTarget,
    create_checkpoint_table,
    live_writers,
)
from ces.adapters.postgres.tables import exchange_rate
from ces.adapters.postgres.verify import verify
from ces.bootstrap import build_replay
from ces.cli.replay_view import LogProgress
from ces.events.base import Event
from ces.events.rates import RateFetched
from ces.projections.rate_rows import Refusal
from ces.projections.replay import PHASES, Partition, PhaseReport, Replay, ReplayOptions, decoding
from ces.settings import Settings
from tests.integration.conftest import migrated_schema

T0 = datetime(2024, 3, 14, 15, 0, tzinfo=UTC)
TP = Partition("rates-fetched", 0)


def rate(target: str, value: str, *, base: str = "EUR", day: int = 0) -> RateFetched:
    published = T0 + timedelta(days=day)
    return RateFetched.for_quote(
        provider_name="ecb",
        base_currency=base,
        target_currency=target,
        rate_value=Decimal(value),
        published_at=published,
        fetched_at=published,
        fetch_id=uuid.UUID(int=day),
    )


@pytest.fixture
def target(pg_schema: tuple[Engine, str], owner_engine: Engine) -> tuple[Engine, str, Checkpoints]:
    # A replay writes its target schema as the owner role (it creates tables and swaps schemas).
    _, schema = pg_schema
    engine = owner_engine
    with engine.begin() as conn:
        create_checkpoint_table(conn, schema)
    return engine, schema, Checkpoints(engine, schema)


@pytest.fixture
def other_schema(settings: Settings, unique: str) -> Iterator[tuple[Engine, str]]:
    schema = f"test_{unique}_b"
    with migrated_schema(settings, schema, owner=True) as engine:
        yield engine, schema


def replay_of(settings: Settings, schema: str) -> Replay:
    return build_replay(settings, ReplayOptions("rates", schema, "public"), LogProgress())


def rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one())


def test_checkpoint_rides_in_the_projectors_transaction(target: tuple[Engine, str, Checkpoints]) -> None:
    engine, _, checkpoints = target
    checkpoints.arm({TP: 3})
    RateProjector(engine).project([rate("USD", "1.0892"), rate("JPY", "161.87")])
    checkpoints.settle()  # nothing left to write on its own: the projector's COMMIT carried it
    assert checkpoints.load() == {TP: 3}

    def failing_batch() -> None:
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))
            raise RuntimeError("the projector failed")

    checkpoints.arm({TP: 5})
    with pytest.raises(RuntimeError):
        failing_batch()
    checkpoints.disarm()
    assert checkpoints.load() == {TP: 3}  # rolled back with the batch
    RateProjector(engine).project([rate("GBP", "0.85713")])  # a disarmed checkpoint rides on nothing later
    assert checkpoints.load() == {TP: 3}
    assert rows(engine) == 3


def test_a_batch_with_poison_and_refused_events_applies_the_rest_and_checkpoints_once(
    settings: Settings, target: tuple[Engine, str, Checkpoints]
) -> None:
    engine, schema, checkpoints = target
    good = [rate("USD", "1.0892"), rate("JPY", "161.87")]
    refused = rate("EUR", "1", base="EUR")  # the database refuses base == target (CHECK constraint)
    records = [
        ("rates-fetched", 0, 0, good[0].to_json()),
        ("rates-fetched", 0, 1, b"{not json"),
        ("rates-fetched", 0, 2, refused.to_json()),
        ("rates-fetched", 0, 3, good[1].to_json()),
        ("rates-fetched", 0, 4, good[0].to_json()),  # a duplicate: no second row
    ]
    report = PhaseReport("rates")
    replay = replay_of(settings, schema)
    try:
        events = decoding.read(records, {"rates-fetched": (RateFetched,)}, {"rates-fetched": None}, {}, report)
        replay._write(PHASES["rates"], events, {TP: 5}, report)
    finally:
        replay.target.close()
    assert (report.events, report.applied, report.refused) == (5, 4, 1)
    assert dict(report.undecodable) == {("rates-fetched", "invalid_json"): 1}
    assert rows(engine) == 2
    assert checkpoints.load() == {TP: 5}


def test_a_failing_write_leaves_no_checkpoint(settings: Settings, target: tuple[Engine, str, Checkpoints]) -> None:
    _, schema, checkpoints = target

    def write_then_fail(engine: Engine, events: Sequence[Event]) -> list[Refusal]:
        RateProjector(engine).project([])  # no transaction at all
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))
            raise ConnectionError("database went away mid-batch")

    failing = PostgresReplayTarget(
        settings.migration_database_dsn, schema, writers={**live_writers(), "rates": write_then_fail}
    )
    replay = Replay(ReplayOptions("rates", schema, "public"), cast(Any, None), failing, LogProgress())
    try:
        with pytest.raises(ConnectionError):
            replay._write(PHASES["rates"], [rate("USD", "1.0892")], {TP: 1}, PhaseReport("rates"))
    finally:
        failing.close()
    assert checkpoints.load() == {}
    checkpoints.settle()
    assert checkpoints.load() == {}


def test_verify_ignores_recorded_at_and_sees_every_digit(
    pg_schema: tuple[Engine, str], other_schema: tuple[Engine, str]
) -> None:
    (live, live_schema), (replayed, replayed_schema) = pg_schema, other_schema
    events = [rate(code, value, day=day) for day in range(3) for code, value in (("USD", "1.0892"), ("JPY", "161"))]
    RateProjector(live).project(events)
    RateProjector(replayed).project(list(reversed(events)))  # other order, later recorded_at
    with live.begin() as conn:
        [result] = verify(conn, live_schema, replayed_schema, [exchange_rate])
    assert result.ok and result.live.rows == 6

    same_value_more_digits = rate("GBP", "0.8571", day=9)
    RateProjector(live).project([same_value_more_digits])
    RateProjector(replayed).project([same_value_more_digits.model_copy(update={"rate_value": Decimal("0.85710")})])
    with live.begin() as conn:
        [result] = verify(conn, live_schema, replayed_schema, [exchange_rate])
    assert not result.ok and result.differing_rows == 1
    [diff] = result.diffs
    assert (diff.key, diff.kind) == (str(same_value_more_digits.rate_id), "differs")
    assert diff.columns == (("rate_value", "0.8571", "0.85710"),)
