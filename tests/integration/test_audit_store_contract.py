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


def _counting_statements(recorder: AsyncRecorder) -> list[int]:
    """Wrap the recorder's statement: the list gets the number of parameters' rows of each one run."""
    counts: list[int] = []
    execute = recorder._execute

    async def counted(params: list[str]) -> list[tuple[object, ...]]:
        counts.append(params[0].count(",") + 1)  # request ids: one per decision recorded
        return await execute(params)

    recorder._execute = counted  # type: ignore[method-assign]
    return counts


def test_calls_that_wait_together_share_one_statement_and_each_gets_its_own_decisions(
    pg_schema: tuple[Engine, str],
) -> None:
    """Group commit: batches that finish deciding while a statement runs are recorded by the next one, and a
    request id in two of them gets the first decision, as if they had been recorded one after the other."""
    recorder = LoopRecorder(*pg_schema)
    counts = _counting_statements(recorder.recorder)
    a, b, c = (rejected(uuid.uuid4()) for _ in range(3))
    again = rejected(a.request_id).model_copy(update={"message": "a second decision for the same request"})

    async def together() -> list[list[Decision]]:
        return list(await asyncio.gather(recorder.recorder.record([a, b]), recorder.recorder.record([c, again])))

    assert asyncio.run(together()) == [[a, b], [c, a]]
    assert counts == [3]  # one statement for both calls, the repeated id once
    assert recorder.get([a.request_id, b.request_id, c.request_id]) == {
        a.request_id: a,
        b.request_id: b,
        c.request_id: c,
    }
    recorder.recorder.close()


def test_a_bad_value_in_a_shared_statement_fails_only_its_own_call(pg_schema: tuple[Engine, str]) -> None:
    recorder = LoopRecorder(*pg_schema)
    counts = _counting_statements(recorder.recorder)
    fine, other = rejected(uuid.uuid4()), rejected(uuid.uuid4())
    refused = rejected(uuid.uuid4()).model_copy(update={"message": "a\x00b"})

    async def together() -> list[object]:
        return list(
            await asyncio.gather(
                recorder.recorder.record([fine]),
                recorder.recorder.record([refused]),
                recorder.recorder.record([other]),
                return_exceptions=True,
            )
        )

    first, second, third = asyncio.run(together())
    assert first == [fine] and third == [other]
    assert isinstance(second, ValueError) and classify(second) is Failure.MESSAGE
    assert counts == [3, 1, 1, 1]  # the shared statement failed as a whole, then each call alone
    assert recorder.get([fine.request_id, refused.request_id, other.request_id]) == {
        fine.request_id: fine,
        other.request_id: other,
    }
    recorder.recorder.close()


def test_a_caller_that_stops_waiting_does_not_stop_the_others(pg_schema: tuple[Engine, str]) -> None:
    """A batch cancelled (the worker stopping) while its statement runs: the statement and the others go on."""
    recorder = LoopRecorder(*pg_schema)
    kept, dropped = rejected(uuid.uuid4()), rejected(uuid.uuid4())
    execute = recorder.recorder._execute

    async def one_cancelled() -> list[Decision]:
        started, release = asyncio.Event(), asyncio.Event()

        async def held(params: list[str]) -> list[tuple[object, ...]]:
            started.set()
            await release.wait()
            return await execute(params)

        recorder.recorder._execute = held  # type: ignore[method-assign]
        gone = asyncio.create_task(recorder.recorder.record([dropped]))
        stays = asyncio.create_task(recorder.recorder.record([kept]))
        await started.wait()  # one statement holds both calls
        gone.cancel()
        release.set()
        assert await stays == [kept]
        assert gone.cancelled()
        return await stays

    assert asyncio.run(one_cancelled()) == [kept]
    assert recorder.get([kept.request_id]) == {kept.request_id: kept}
    recorder.recorder.close()
