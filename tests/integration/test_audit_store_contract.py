"""The PostgreSQL audit store passes the audit store's contract (its in-memory twin: tests/unit)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence

import psycopg2
import pytest
from sqlalchemy import Engine, text

from ces.adapters.failures import Failure, classify
from ces.adapters.postgres.async_record import AsyncRecorder
from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.rate_projector import RateProjector
from ces.events.conversions import ConversionAudited, Decision
from tests.contracts.audit_store import AuditStoreContract, AuditStoreLike, rejected
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


class LoopRecorder:
    """`AsyncRecorder` behind the contract's synchronous interface: each `record` runs on a fresh loop."""

    def __init__(self, engine: Engine, schema: str) -> None:
        self.recorder = AsyncRecorder(engine, connect_args={"options": f"-csearch_path={schema}"})
        self.store = AuditStore(engine)

    def record(self, decisions: Sequence[Decision]) -> list[Decision]:
        return asyncio.run(self.recorder.record(decisions))

    def get(self, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Decision]:
        return self.store.get(request_ids)

    def get_audit(self, audit_id: uuid.UUID) -> ConversionAudited | None:
        return self.store.get_audit(audit_id)


class TestAsyncRecorder(AuditStoreContract):
    """The worker's record path (async psycopg2, prepared statement) keeps the same contract."""

    @pytest.fixture
    def store(self, pg_schema: tuple[Engine, str]) -> Iterator[AuditStoreLike]:
        recorder = LoopRecorder(*pg_schema)
        yield recorder
        recorder.recorder.close()

    rate_ids = TestPostgresAuditStore.rate_ids


def test_a_connection_lost_fails_that_call_transiently_and_the_next_reconnects(pg_schema: tuple[Engine, str]) -> None:
    """A PostgreSQL restart, as the worker's record path sees it: its connection is gone under it."""
    recorder = LoopRecorder(*pg_schema)
    first = rejected(uuid.uuid4())
    assert recorder.record([first]) == [first]
    (conn,) = recorder.recorder._idle
    with pg_schema[0].begin() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": conn.get_backend_pid()})
    second = rejected(uuid.uuid4())
    with pytest.raises(psycopg2.OperationalError) as lost:
        recorder.record([second])
    assert classify(lost.value) is Failure.TRANSIENT
    assert recorder.recorder._idle == []  # the dead connection was dropped, not pooled
    assert recorder.record([second, first]) == [second, first]  # a retry of the batch: reconnected
    assert recorder.get([second.request_id]) == {second.request_id: second}
    recorder.recorder.close()


def test_texts_that_array_literals_would_misread_are_stored_as_given(pg_schema: tuple[Engine, str]) -> None:
    """The record path sends each column as one array literal: quoting must keep every text as data."""
    recorder = LoopRecorder(*pg_schema)
    awkward = ['a "quoted", {braced} \\ text', "NULL", "", " padded ", "it's", "line\nbreak", "\u00e9\u20ac\U0001f600"]
    made = [rejected(uuid.uuid4()).model_copy(update={"message": text_, "requested_by": None}) for text_ in awkward]
    assert recorder.record(made) == made
    stored = recorder.get([d.request_id for d in made])
    assert [stored[d.request_id].message for d in made] == awkward  # type: ignore[union-attr]
    recorder.recorder.close()


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800"], ids=["NUL", "lone surrogate"])
def test_a_value_the_driver_refuses_is_the_message_s_fault_and_the_connection_stays(
    pg_schema: tuple[Engine, str], bad: str
) -> None:
    recorder = LoopRecorder(*pg_schema)
    fine = rejected(uuid.uuid4())
    assert recorder.record([fine]) == [fine]
    refused = rejected(uuid.uuid4()).model_copy(update={"message": bad})
    with pytest.raises((ValueError, UnicodeEncodeError)) as error:
        recorder.record([refused])
    assert classify(error.value) is Failure.MESSAGE  # the batch consumer isolates and dead-letters it
    assert len(recorder.recorder._idle) == 1  # no reconnect for a bad value
    assert recorder.get([refused.request_id]) == {}  # nothing of it was written
    recorder.recorder.close()


def test_a_host_name_is_resolved_on_the_loop_and_connects(pg_schema: tuple[Engine, str]) -> None:
    """The stack's address as a name: the recorder resolves it itself and libpq connects to what it found."""
    engine, schema = pg_schema
    recorder = LoopRecorder(engine, schema)
    assert recorder.recorder._connect_args[1]["host"] in {"127.0.0.1", "localhost"}
    recorder.recorder._connect_args[1]["host"] = "localhost"
    decision = rejected(uuid.uuid4())
    assert recorder.record([decision]) == [decision]
    (conn,) = recorder.recorder._idle
    assert conn.info.host == "localhost"
    assert set(conn.get_dsn_parameters()["hostaddr"].split(",")) <= {"127.0.0.1", "::1"}  # ours, not libpq's
    recorder.recorder.close()
