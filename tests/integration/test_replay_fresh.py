"""A fresh replay target loads without the audit tables' foreign keys and secondary index, and ends with
exactly the migrated schema: against the real PostgreSQL, with an interruption while adding them back and a
foreign key that does not hold."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from ces.adapters.postgres import replay_constraints
from ces.adapters.postgres.bulk_audit import copy_decisions
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.replay_constraints import DEFERRED_TABLE
from ces.adapters.postgres.replay_swap import SwapRefused, swap
from ces.adapters.postgres.replay_target import PostgresReplayTarget, bulk_writers
from ces.adapters.postgres.verify import PROJECTION_TABLES, verify
from ces.projections.replay import CHECKPOINT_TABLE, Partition, ReplayError
from ces.settings import Settings
from tests.integration.test_audit_store import audited, rejected
from tests.integration.test_rate_projection import T0, rate_event
from tests.support import drop_schema, schema_catalog

TP = Partition("conversions-audited", 0)
BOOKKEEPING = (CHECKPOINT_TABLE, DEFERRED_TABLE)


@pytest.fixture
def fresh(settings: Settings, unique: str) -> Iterator[tuple[PostgresReplayTarget, str]]:
    schema = f"test_{unique}_fresh"
    target = PostgresReplayTarget(settings.migration_database_dsn, schema, writers=bulk_writers())
    try:
        yield target, schema
    finally:
        target.close()
        drop_schema(settings.migration_database_dsn, schema)


def foreign_keys(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
                    "WHERE t.relnamespace = to_regnamespace(current_schema()) AND c.contype = 'f' "
                    "AND t.relname IN ('conversion_audit', 'conversion_rejection')"
                )
            ).scalar_one()
        )


def load(target: PostgresReplayTarget, live: Engine | None = None) -> None:
    """Rates and decisions (audits, a rejection, a re-published decision) into the target, and into `live`
    by the same writers when given."""
    usd = rate_event("USD", "1.0892", T0)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    decisions: list[Any] = [audited(a, usd.rate_id), audited(b, usd.rate_id), rejected(c), audited(a, usd.rate_id)]
    target.write("rates", [usd], None)
    target.write("audit", decisions[:2], {TP: 2})
    target.write("audit", decisions[2:], {TP: 4})
    if live is not None:
        RateProjector(live).project([usd])
        copy_decisions(live, decisions)


def test_a_fresh_target_loads_without_foreign_keys_and_ends_as_migrated(
    settings: Settings, fresh: tuple[PostgresReplayTarget, str], pg_schema: tuple[Engine, str]
) -> None:
    target, schema = fresh
    live, live_schema = pg_schema
    migrated = schema_catalog(settings.migration_database_dsn, live_schema)
    assert target.prepare(restart=False) is False
    assert schema_catalog(settings.migration_database_dsn, schema, leave_out=BOOKKEEPING) == migrated

    # conversion_audit: request_id, rate_used_id, second_rate_id; conversion_rejection: request_id; the index.
    assert target.defer_constraints() == 5
    assert foreign_keys(target.engine) == 0
    during = schema_catalog(settings.migration_database_dsn, schema, leave_out=BOOKKEEPING)
    assert not [row for row in during if row[2] == "conversion_audit_converted_at"]
    # The primary keys and the unique request id stay (ON CONFLICT needs them), the insert-only triggers too.
    kept = {row[2] for row in during}
    assert {"conversion_audit_pkey", "conversion_audit_request_id_key", "conversion_request_pkey"} <= kept
    assert {"conversion_audit_insert_only", "conversion_rejection_insert_only"} <= kept

    load(target, live)
    assert target.restore_constraints() == 5
    assert target.restore_constraints() == 0  # nothing left: a second call is a no-op

    assert schema_catalog(settings.migration_database_dsn, schema, leave_out=BOOKKEEPING) == migrated
    with target.admin.begin() as conn:
        results = verify(conn, live_schema, schema, PROJECTION_TABLES["all"], max_diffs=5)
    assert all(r.ok for r in results), results
    # The finished target's insert-only triggers refuse a mutation.
    with pytest.raises(Exception, match="conversion_audit is insert-only"), target.engine.begin() as conn:
        conn.execute(text("DELETE FROM conversion_audit"))


def test_an_interrupted_restore_resumes_where_it_stopped(
    settings: Settings, fresh: tuple[PostgresReplayTarget, str], pg_schema: tuple[Engine, str], monkeypatch: Any
) -> None:
    target, schema = fresh
    migrated = schema_catalog(settings.migration_database_dsn, pg_schema[1])
    target.prepare(restart=False)
    target.defer_constraints()
    load(target)

    # The third object's transaction dies half-way (after its ADD CONSTRAINT), as under a kill.
    executed: list[str] = []
    real_text = replay_constraints.text

    def dying_text(sql: str) -> Any:
        if "VALIDATE CONSTRAINT" in sql:
            executed.append(sql)
            if len(executed) == 2:
                raise KeyboardInterrupt
        return real_text(sql)

    monkeypatch.setattr(replay_constraints, "text", dying_text)
    with pytest.raises(KeyboardInterrupt):
        target.restore_constraints()
    monkeypatch.undo()
    with target.engine.connect() as conn:
        left = replay_constraints.deferred(conn)
    assert len(left) == 3  # the index and one foreign key were added; the interrupted one rolled back
    assert foreign_keys(target.engine) == 1

    again = PostgresReplayTarget(settings.migration_database_dsn, schema, writers=bulk_writers())
    try:
        assert again.prepare(restart=False) is True  # a re-run resumes ...
        assert again.restore_constraints() == 3  # ... and adds back exactly what is missing
    finally:
        again.close()
    assert schema_catalog(settings.migration_database_dsn, schema, leave_out=BOOKKEEPING) == migrated


def test_a_foreign_key_that_does_not_hold_fails_loudly_and_blocks_the_swap(
    settings: Settings, fresh: tuple[PostgresReplayTarget, str], pg_schema: tuple[Engine, str]
) -> None:
    target, schema = fresh
    target.prepare(restart=False)
    target.defer_constraints()
    load(target)
    orphan = audited(uuid.uuid4(), uuid.uuid4())  # names a rate the target does not hold
    target.write("audit", [orphan], {TP: 5})  # loads: the foreign key is not there to refuse it

    with pytest.raises(ReplayError) as failed:
        target.restore_constraints()

    message = str(failed.value)
    assert "conversion_audit_rate_used_id_fkey" in message and "1 replayed rows" in message
    assert f"id={orphan.audit_id}" in message and f"rate_used_id={orphan.rate_id}" in message
    with target.engine.connect() as conn:
        assert "conversion_audit_rate_used_id_fkey" in {row[0] for row in replay_constraints.deferred(conn)}
    with pytest.raises(SwapRefused, match="still lacks"):
        swap(settings.migration_database_dsn, pg_schema[1], schema)


def test_without_a_deferral_nothing_is_dropped_and_restoring_is_a_no_op(
    fresh: tuple[PostgresReplayTarget, str],
) -> None:
    target, _ = fresh
    target.prepare(restart=False)
    assert target.restore_constraints() == 0  # no bookkeeping table at all
    assert foreign_keys(target.engine) == 4
