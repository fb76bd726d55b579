"""The gateway's conversion use case against fakes: publish and wait, replays marked by the worker, one deadline."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.replies import ReplyRouter
from ces.domain.as_of import read_as_of
from ces.events.base import Event
from ces.events.conversions import ConversionAudited, ConversionRequested
from ces.services.conversion_requests import (
    BackendUnavailable,
    ConversionRequester,
    Decision,
    IdempotencyConflict,
    Overloaded,
    ResultTimeout,
)
from ces.services.ports import REPUBLISHED_HEADER, TooManyPending
from tests.contracts.audit_store import audited, rejected
from tests.fakes import FakeAuditStore, FakePublisher

RATE_ID = uuid.uuid4()
AMOUNT = Decimal("100.00")  # what `audited` converts, EUR->USD
# Short deadlines keep the unit suite fast; every outcome below holds for any scheduling delay, because
# the simulated backends are slower than the deadline by construction, never faster by luck.
DEADLINE = 0.2
SLOW = 0.12  # under the deadline alone, over it twice


class FakeWorker(FakePublisher):
    """A publisher whose broker hands each request to a worker that answers on the router.

    `hang` never acknowledges; `delay` acknowledges late; `answer` builds the worker's decision (None:
    no result ever comes), delivered `result_delay` seconds after the acknowledgement. Like the real
    worker, it records the decision first and answers a request id decided before with the stored
    decision, marked with the republished header.
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
        self.store = FakeAuditStore()

    async def publish(self, events: Sequence[Event]) -> None:
        self.started += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)  # simulates a slow broker; nothing waits on it to synchronise
        await super().publish(events)
        for event in events:
            if self.answer is not None and isinstance(event, ConversionRequested):
                made = self.answer(event)
                (standing,) = self.store.record([made])
                headers = [(REPUBLISHED_HEADER, b"1")] if standing is not made else []
                # Through the router's own decoding, as a record read from a result topic would be.
                asyncio.get_running_loop().call_later(
                    self.result_delay, self.router._route, event.key(), standing.to_json(), headers
                )


def as_decided(request: ConversionRequested) -> Decision:
    return audited(request.request_id, [RATE_ID], amount=str(request.amount))


@pytest.fixture
def router() -> Iterator[ReplyRouter]:
    router = ReplyRouter(
        KafkaConnection("127.0.0.1:9"), ["conversions-audited", "conversions-rejected"], max_pending=10
    )
    yield router
    assert router.pending == 0  # whatever happened, the waiter was forgotten


def req(
    request_id: uuid.UUID, base: str, target: str, amount: Decimal, as_of: str | None = None
) -> ConversionRequested:
    return ConversionRequested(
        request_id=request_id, base_currency=base, target_currency=target, amount=amount, as_of=as_of
    )


def requester(publisher: FakePublisher, router: ReplyRouter, timeout: float = 5.0) -> ConversionRequester:
    return ConversionRequester(publisher, router, timeout=timeout)


async def test_a_new_request_is_published_and_its_result_returned(router: ReplyRouter) -> None:
    rid = uuid.uuid4()
    worker = FakeWorker(router, as_decided)
    decision, replayed = await requester(worker, router).convert(req(rid, "EUR", "USD", AMOUNT))
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


async def test_a_repeated_request_gets_the_first_decision_marked_as_a_replay(router: ReplyRouter) -> None:
    rid = uuid.uuid4()
    worker = FakeWorker(router, as_decided)
    first, first_replayed = await requester(worker, router).convert(req(rid, "EUR", "USD", AMOUNT))
    again, again_replayed = await requester(worker, router).convert(req(rid, "EUR", "USD", AMOUNT))
    assert (first_replayed, again_replayed) == (False, True)
    assert again == first and again.to_json() == first.to_json()
    assert worker.started == 2  # no database on the gateway's path: the worker answered the repeat


async def test_a_rejection_is_a_result_too_and_its_repeat_the_same_rejection(router: ReplyRouter) -> None:
    rid = uuid.uuid4()
    worker = FakeWorker(router, lambda r: rejected(r.request_id))
    decision, replayed = await requester(worker, router).convert(req(rid, "EUR", "USD", AMOUNT))
    assert decision == rejected(rid) and not replayed
    worker.answer = as_decided  # a rate appeared meanwhile: the first decision still stands
    again, replayed = await requester(worker, router).convert(req(rid, "EUR", "USD", AMOUNT))
    assert again == decision and replayed


async def test_a_request_id_reused_with_another_amount_or_pair_is_a_conflict(router: ReplyRouter) -> None:
    rid = uuid.uuid4()
    worker = FakeWorker(router, as_decided)
    await requester(worker, router).convert(req(rid, "EUR", "USD", AMOUNT))
    with pytest.raises(IdempotencyConflict):
        await requester(worker, router).convert(req(rid, "EUR", "USD", Decimal("200.00")))
    with pytest.raises(IdempotencyConflict):
        await requester(worker, router).convert(req(rid, "EUR", "JPY", AMOUNT))
    assert worker.started == 3


async def test_a_request_id_reused_with_another_as_of_is_a_conflict(router: ReplyRouter) -> None:
    def priced_then(request: ConversionRequested) -> Decision:
        then = None if request.as_of is None else read_as_of(request.as_of)[0]
        return as_decided(request).model_copy(update={"as_of": then})

    rid = uuid.uuid4()
    worker = FakeWorker(router, priced_then)
    first, _ = await requester(worker, router).convert(req(rid, "EUR", "USD", AMOUNT, as_of="2010-05-07"))
    assert (worker.published[0].as_of, first.as_of) == ("2010-05-07", datetime(2010, 5, 7, 23, 59, 59, 999999, UTC))
    # The same instant however it is written is the same request; another instant, or none, is not.
    same, replayed = await requester(worker, router).convert(
        req(rid, "EUR", "USD", AMOUNT, as_of="2010-05-08T01:59:59.999999+02:00")
    )
    assert same == first and replayed
    for other in ("2010-05-08", None):
        with pytest.raises(IdempotencyConflict):
            await requester(worker, router).convert(req(rid, "EUR", "USD", AMOUNT, as_of=other))


async def test_a_hung_publish_is_backend_unavailable(router: ReplyRouter) -> None:
    worker = FakeWorker(router, as_decided, hang=True)
    with pytest.raises(BackendUnavailable):
        await requester(worker, router, DEADLINE).convert(req(uuid.uuid4(), "EUR", "USD", AMOUNT))
    assert worker.started == 1 and worker.published == []


async def test_a_published_request_without_a_result_is_a_result_timeout(router: ReplyRouter) -> None:
    worker = FakeWorker(router, answer=None)
    with pytest.raises(ResultTimeout):
        await requester(worker, router, DEADLINE).convert(req(uuid.uuid4(), "EUR", "USD", AMOUNT))
    assert len(worker.published) == 1


async def test_one_deadline_covers_the_publish_and_the_wait_for_the_result(router: ReplyRouter) -> None:
    # Each takes less than the deadline; together they take more.
    worker = FakeWorker(router, as_decided, delay=SLOW, result_delay=SLOW)
    with pytest.raises(ResultTimeout):
        await requester(worker, router, DEADLINE).convert(req(uuid.uuid4(), "EUR", "USD", AMOUNT))
    assert len(worker.published) == 1
    # The same backends within a deadline that fits them both: the rig itself is not broken.
    decision, _ = await requester(worker, router, 10 * DEADLINE).convert(req(uuid.uuid4(), "EUR", "USD", AMOUNT))
    assert isinstance(decision, ConversionAudited)


async def test_a_failing_publish_propagates_and_the_waiter_is_forgotten(router: ReplyRouter) -> None:
    worker = FakeWorker(router, as_decided)
    worker.error = ConnectionError("broker refused")
    with pytest.raises(ConnectionError):
        await requester(worker, router).convert(req(uuid.uuid4(), "EUR", "USD", AMOUNT))


async def test_too_many_pending_refuses_before_publishing(router: ReplyRouter) -> None:
    other = uuid.uuid4()
    waiters = [router.expect(other) for _ in range(router.max_pending)]
    worker = FakeWorker(router, as_decided)
    with pytest.raises(TooManyPending):
        await requester(worker, router).convert(req(uuid.uuid4(), "EUR", "USD", AMOUNT))
    assert worker.started == 0 and router.pending == router.max_pending
    for waiter in waiters:
        router.forget(other, waiter)


async def test_a_cancelled_caller_stays_cancelled_and_its_waiter_is_forgotten(router: ReplyRouter) -> None:
    # The deadline cancels the task itself; a cancellation from outside must not pass for a timeout.
    worker = FakeWorker(router, answer=None)
    task = asyncio.create_task(
        requester(worker, router, 10 * DEADLINE).convert(req(uuid.uuid4(), "EUR", "USD", AMOUNT))
    )
    for _ in range(1000):  # until it waits for its result (a few loop turns)
        if worker.published:
            break
        await asyncio.sleep(0)
    assert worker.published
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_the_deadline_ends_with_the_call_and_never_cancels_the_caller_later(router: ReplyRouter) -> None:
    # After a decision, and after a refusal before publishing, the caller's task goes on past the deadline.
    worker = FakeWorker(router, as_decided)
    decision, _ = await requester(worker, router, DEADLINE).convert(req(uuid.uuid4(), "EUR", "USD", AMOUNT))
    assert isinstance(decision, ConversionAudited)
    other = uuid.uuid4()
    waiters = [router.expect(other) for _ in range(router.max_pending)]
    with pytest.raises(TooManyPending):
        await requester(worker, router, DEADLINE).convert(req(uuid.uuid4(), "EUR", "USD", AMOUNT))
    for waiter in waiters:
        router.forget(other, waiter)
    await asyncio.sleep(2 * DEADLINE)  # the time under test: a stray timer would cancel this task in it
    assert asyncio.current_task() is not None and not asyncio.current_task().cancelling()  # type: ignore[union-attr]


# Batches (`convert_many`): the router fixture holds at most 10 waiters, so 25 requests need waves.


def batch(n: int, amount: Decimal = AMOUNT) -> list[ConversionRequested]:
    return [req(uuid.uuid4(), "EUR", "USD", amount) for _ in range(n)]


async def test_a_batch_larger_than_max_pending_goes_out_in_waves_and_every_item_is_decided(
    router: ReplyRouter,
) -> None:
    worker = FakeWorker(router, as_decided)
    requests = batch(25)
    outcomes = await requester(worker, router).convert_many(requests, timeout=5.0)
    assert [o[0].request_id for o in outcomes if isinstance(o, tuple)] == [r.request_id for r in requests]
    assert 3 <= worker.started <= 25  # waves, each a single send of what fitted
    assert [e.request_id for e in worker.published] == [r.request_id for r in requests]  # type: ignore[attr-defined]


async def test_a_batch_replays_earlier_decisions_and_flags_a_changed_item_as_a_conflict(router: ReplyRouter) -> None:
    worker = FakeWorker(router, as_decided)
    first = batch(3)
    await requester(worker, router).convert(first[0])
    changed = req(first[1].request_id, "EUR", "USD", Decimal("1.00"))
    await requester(worker, router).convert(first[1])
    outcomes = await requester(worker, router).convert_many([first[0], changed, first[2]], timeout=5.0)
    assert isinstance(outcomes[0], tuple) and outcomes[0][1] is True  # decided before: a replay
    assert isinstance(outcomes[1], IdempotencyConflict)
    assert isinstance(outcomes[2], tuple) and outcomes[2][1] is False


async def test_a_batch_without_results_times_out_item_by_item_within_one_deadline(router: ReplyRouter) -> None:
    worker = FakeWorker(router, answer=None)
    outcomes = await requester(worker, router).convert_many(batch(5), timeout=DEADLINE)
    assert all(isinstance(o, ResultTimeout) for o in outcomes) and len(outcomes) == 5


async def test_a_batch_keeps_the_decisions_it_got_when_others_time_out(router: ReplyRouter) -> None:
    class LosesTheLast(FakeWorker):
        async def publish(self, events: Sequence[Event]) -> None:
            await super().publish(events[:-1])  # acknowledged, but the worker never sees the last one

    decided = batch(2)
    outcomes = await requester(LosesTheLast(router, as_decided), router).convert_many(decided, timeout=DEADLINE)
    assert isinstance(outcomes[0], tuple) and isinstance(outcomes[1], ResultTimeout)


async def test_a_batch_on_a_hung_or_failing_broker_is_backend_unavailable_per_item(router: ReplyRouter) -> None:
    hung = FakeWorker(router, as_decided, hang=True)
    outcomes = await requester(hung, router).convert_many(batch(3), timeout=DEADLINE)
    assert all(isinstance(o, BackendUnavailable) for o in outcomes)
    failing = FakeWorker(router, as_decided)
    failing.error = ConnectionError("broker refused")
    started = asyncio.get_running_loop().time()
    outcomes = await requester(failing, router).convert_many(batch(3), timeout=5.0)
    assert all(isinstance(o, BackendUnavailable) for o in outcomes)
    assert asyncio.get_running_loop().time() - started < 5.0  # a failed send does not wait for the deadline


async def test_a_batch_that_finds_no_room_is_overloaded_per_item_and_publishes_nothing(router: ReplyRouter) -> None:
    other = uuid.uuid4()
    waiters = [router.expect(other) for _ in range(router.max_pending)]
    worker = FakeWorker(router, as_decided)
    outcomes = await requester(worker, router).convert_many(batch(3), timeout=DEADLINE)
    assert all(isinstance(o, Overloaded) for o in outcomes) and worker.started == 0
    for waiter in waiters:
        router.forget(other, waiter)


async def test_a_batch_leaves_the_room_it_is_told_to_leave_for_single_requests(router: ReplyRouter) -> None:
    worker = FakeWorker(router, answer=None)  # no results: the room the batch took is never freed
    outcomes = await requester(worker, router).convert_many(batch(10), timeout=DEADLINE, leave_room=4)
    assert len(worker.published) == 6  # max_pending 10, 4 left to others
    assert [type(o) for o in outcomes] == [ResultTimeout] * 6 + [Overloaded] * 4
