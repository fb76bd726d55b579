"""The gateway's conversion use case against fakes: replay from the store, publish and wait, one deadline."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal

import pytest

from ces.adapters.kafka.replies import ReplyRouter
from ces.events.base import Event
from ces.events.conversions import ConversionAudited, ConversionRequested
from ces.services.conversion_requests import (
    BackendUnavailable,
    ConversionRequester,
    Decision,
    IdempotencyConflict,
    ResultTimeout,
)
from ces.services.ports import TooManyPending
from tests.contracts.audit_store import audited, rejected
from tests.fakes import FakeAuditStore, FakePublisher

RATE_ID = uuid.uuid4()
AMOUNT = Decimal("100.00")  # what `audited` converts, EUR->USD
# Short deadlines keep the unit suite fast; every outcome below holds for any scheduling delay, because
# the simulated backends are slower than the deadline by construction, never faster by luck.
DEADLINE = 0.2
SLOW = 0.12  # under the deadline alone, over it twice


class GatedStore(FakeAuditStore):
    """`get` blocks its thread until `gate` is set, or for `seconds` at most: a slow or hung database."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.seconds = seconds

    def get(self, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Decision]:
        self.gate.wait(self.seconds)
        return super().get(request_ids)


class FakeWorker(FakePublisher):
    """A publisher whose broker hands each request to a worker that answers on the router.

    `hang` never acknowledges; `delay` acknowledges late; `answer` builds the worker's decision (None:
    no result ever comes), delivered `result_delay` seconds after the acknowledgement.
    """

    def __init__(
        self,
        router: ReplyRouter,
        answer: Callable[[ConversionRequested], Decision] | None = None,
        *,
        hang: bool = False,
        delay: float = 0.0,
        result_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.router, self.answer, self.hang = router, answer, hang
        self.delay, self.result_delay = delay, result_delay
        self.started = 0  # publish attempts, acknowledged or not

    async def publish(self, events: Sequence[Event]) -> None:
        self.started += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)  # simulates a slow broker; nothing waits on it to synchronise
        await super().publish(events)
        for event in events:
            if self.answer is not None and isinstance(event, ConversionRequested):
                result = self.answer(event)
                # Through the router's own decoding, as a record read from a result topic would be.
                asyncio.get_running_loop().call_later(
                    self.result_delay, self.router._route, event.key(), result.to_json()
                )


def as_decided(request: ConversionRequested) -> Decision:
    return audited(request.request_id, [RATE_ID], amount=str(request.amount))


@pytest.fixture
def router() -> Iterator[ReplyRouter]:
    router = ReplyRouter("127.0.0.1:9", ["conversions-audited", "conversions-rejected"], max_pending=10)
    yield router
    assert router.pending == 0  # whatever happened, the waiter was forgotten


def requester(
    store: FakeAuditStore, publisher: FakePublisher, router: ReplyRouter, timeout: float = 5.0
) -> ConversionRequester:
    return ConversionRequester(store, publisher, router, timeout=timeout)  # type: ignore[arg-type]


async def test_a_request_decided_before_is_answered_from_the_store_without_publishing(router: ReplyRouter) -> None:
    rid = uuid.uuid4()
    store = FakeAuditStore()
    (earlier,) = store.record([audited(rid, [RATE_ID])])
    worker = FakeWorker(router, as_decided)
    assert await requester(store, worker, router).convert(rid, "EUR", "USD", AMOUNT) == (earlier, True)
    assert worker.started == 0


async def test_a_new_request_is_published_and_its_result_returned(router: ReplyRouter) -> None:
    rid = uuid.uuid4()
    worker = FakeWorker(router, as_decided)
    decision, replayed = await requester(FakeAuditStore(), worker, router).convert(rid, "EUR", "USD", AMOUNT)
    assert not replayed
    (published,) = worker.published
    assert isinstance(published, ConversionRequested)
    assert decision.to_json() == as_decided(published).to_json()
    assert (published.request_id, published.base_currency, published.target_currency, published.amount) == (
        rid,
        "EUR",
        "USD",
        AMOUNT,
    )


async def test_a_rejection_is_a_result_too(router: ReplyRouter) -> None:
    rid = uuid.uuid4()
    worker = FakeWorker(router, lambda r: rejected(r.request_id))
    decision, replayed = await requester(FakeAuditStore(), worker, router).convert(rid, "EUR", "USD", AMOUNT)
    assert decision == rejected(rid) and not replayed


async def test_a_request_id_reused_with_another_amount_is_a_conflict(router: ReplyRouter) -> None:
    rid = uuid.uuid4()
    store = FakeAuditStore()
    store.record([audited(rid, [RATE_ID])])
    worker = FakeWorker(router, as_decided)
    with pytest.raises(IdempotencyConflict):
        await requester(store, worker, router).convert(rid, "EUR", "USD", Decimal("200.00"))
    with pytest.raises(IdempotencyConflict):
        await requester(store, worker, router).convert(rid, "EUR", "JPY", AMOUNT)
    assert worker.started == 0


async def test_a_conflict_decided_meanwhile_by_another_request_is_caught_on_the_result(router: ReplyRouter) -> None:
    # Another gateway published the same id with 100.00 first; the worker re-publishes that decision.
    rid = uuid.uuid4()
    worker = FakeWorker(router, lambda r: audited(r.request_id, [RATE_ID], amount="100.00"))
    with pytest.raises(IdempotencyConflict):
        await requester(FakeAuditStore(), worker, router).convert(rid, "EUR", "USD", Decimal("7.00"))
    assert worker.started == 1


async def test_a_hung_store_is_backend_unavailable_and_nothing_is_published(router: ReplyRouter) -> None:
    store = GatedStore(seconds=30)
    worker = FakeWorker(router, as_decided)
    try:
        with pytest.raises(BackendUnavailable):
            await requester(store, worker, router, DEADLINE).convert(uuid.uuid4(), "EUR", "USD", AMOUNT)
    finally:
        store.gate.set()  # let the abandoned thread finish, or closing the loop's executor would wait for it
    assert worker.started == 0


async def test_a_hung_publish_is_backend_unavailable(router: ReplyRouter) -> None:
    worker = FakeWorker(router, as_decided, hang=True)
    with pytest.raises(BackendUnavailable):
        await requester(FakeAuditStore(), worker, router, DEADLINE).convert(uuid.uuid4(), "EUR", "USD", AMOUNT)
    assert worker.started == 1 and worker.published == []


async def test_a_published_request_without_a_result_is_a_result_timeout(router: ReplyRouter) -> None:
    worker = FakeWorker(router, answer=None)
    with pytest.raises(ResultTimeout):
        await requester(FakeAuditStore(), worker, router, DEADLINE).convert(uuid.uuid4(), "EUR", "USD", AMOUNT)
    assert len(worker.published) == 1


async def test_one_deadline_covers_the_store_read_and_the_publish(router: ReplyRouter) -> None:
    # Each takes less than the deadline; together they take more.
    store, worker = GatedStore(seconds=SLOW), FakeWorker(router, as_decided, delay=SLOW)
    with pytest.raises(BackendUnavailable):
        await requester(store, worker, router, DEADLINE).convert(uuid.uuid4(), "EUR", "USD", AMOUNT)
    assert worker.published == []
    # The same backends within a deadline that fits them both: the rig itself is not broken.
    decision, _ = await requester(store, worker, router, 10 * DEADLINE).convert(uuid.uuid4(), "EUR", "USD", AMOUNT)
    assert isinstance(decision, ConversionAudited)


async def test_one_deadline_covers_the_store_read_and_the_wait_for_the_result(router: ReplyRouter) -> None:
    store, worker = GatedStore(seconds=SLOW), FakeWorker(router, as_decided, result_delay=SLOW)
    with pytest.raises(ResultTimeout):
        await requester(store, worker, router, DEADLINE).convert(uuid.uuid4(), "EUR", "USD", AMOUNT)
    assert len(worker.published) == 1


async def test_a_failing_publish_propagates_and_the_waiter_is_forgotten(router: ReplyRouter) -> None:
    worker = FakeWorker(router, as_decided)
    worker.error = ConnectionError("broker refused")
    with pytest.raises(ConnectionError):
        await requester(FakeAuditStore(), worker, router).convert(uuid.uuid4(), "EUR", "USD", AMOUNT)


async def test_too_many_pending_refuses_before_publishing(router: ReplyRouter) -> None:
    other = uuid.uuid4()
    waiters = [router.expect(other) for _ in range(router.max_pending)]
    worker = FakeWorker(router, as_decided)
    with pytest.raises(TooManyPending):
        await requester(FakeAuditStore(), worker, router).convert(uuid.uuid4(), "EUR", "USD", AMOUNT)
    assert worker.started == 0 and router.pending == router.max_pending
    for waiter in waiters:
        router.forget(other, waiter)
