"""Synchronous conversions for the gateway: publish a request (or a batch of them), wait for each one's decision.

No database read on this path: every request is published, and the worker answers it. A request id
decided before is answered by the worker with its stored decision, re-published and marked as such
(`REPUBLISHED_HEADER`), so the caller gets the first decision and learns that it is a replay; a request
id reused with different currencies or amount is a conflict, found by comparing that decision with the
request. A repeat costs a Kafka round trip instead of a PostgreSQL one; a new request, the common case,
saves the read it never needed (docs/http.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from ces.domain.as_of import read_as_of
from ces.events.conversions import ConversionAudited, ConversionRejected, ConversionRequested, Decision
from ces.services.ports import EventPublisher, Replies, Reply


class ResultTimeout(Exception):
    pass


class IdempotencyConflict(Exception):
    pass


class BackendUnavailable(Exception):
    pass


class Overloaded(Exception):
    """No room under the pending bound for this request before the deadline: it was not published."""


# What one request of a batch came to: its decision and whether it was a replay, or why it has none.
Outcome = tuple[Decision, bool] | ResultTimeout | BackendUnavailable | IdempotencyConflict | Overloaded


class ConversionRequester:
    def __init__(self, publisher: EventPublisher, router: Replies, *, timeout: float) -> None:
        self.publisher = publisher
        self.router = router
        self.timeout = timeout

    async def convert(self, request: ConversionRequested) -> tuple[Decision, bool]:
        """The decision for this request, and whether it was decided before (an idempotent replay).

        One deadline (`timeout`) covers the whole call: the publish and the wait for the result. Running
        out of it before the broker acknowledged the request means the broker is not answering
        (`BackendUnavailable`); after, that no result came in time (`ResultTimeout`).
        """
        published = False
        request_id = request.request_id
        # The deadline is one timer that cancels this task, as `asyncio.timeout` does, without its context
        # manager's object and state per request (~3% of the gateway's CPU per POST, docs/http.md).
        task = asyncio.current_task()
        assert task is not None
        waiter = self.router.expect(request_id)  # may refuse (TooManyPending): before the timer
        deadline, cancelling = _Deadline(task), task.cancelling()
        timer = asyncio.get_running_loop().call_later(self.timeout, deadline.expire)
        try:
            await self.publisher.publish([request])
            published = True
            decision, replayed = await waiter
        except asyncio.CancelledError:
            if not deadline.expired or task.uncancel() > cancelling:
                raise  # cancelled from outside, not (only) by the deadline
            if published:
                raise ResultTimeout from None
            raise BackendUnavailable("the broker did not acknowledge the request within the deadline") from None
        finally:
            timer.cancel()
            self.router.forget(request_id, waiter)
        assert isinstance(decision, ConversionAudited | ConversionRejected)
        conflict = _conflict(decision, request)
        if conflict is not None:
            raise conflict
        return decision, replayed

    async def convert_many(
        self,
        requests: Sequence[ConversionRequested],
        *,
        timeout: float,
        leave_room: int = 0,
        on_decided: Callable[[], object] | None = None,
    ) -> list[Outcome]:
        """Each request's outcome, in input order. Never raises for one item. A request id may repeat (the
        gateway refuses that, `ces convert` allows it): each copy gets the first decision for the id.
        `on_decided` is called once per item as its decision arrives (a progress bar). `leave_room`: waiters
        this batch leaves to other callers (the gateway keeps room for single requests while a batch runs).

        Requests are published in as few sends as the pending bound allows: all at once when there is room
        for them, else in waves as earlier results free room (a batch never pushes the gateway past
        `max_pending`, nor into the `leave_room` kept for others). One
        deadline covers everything; what is undecided then is `ResultTimeout` (published) or `Overloaded`
        (never found room), item by item, and the decided ones keep their decisions.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiters: list[asyncio.Future[Reply] | None] = [None] * len(requests)
        sends: list[tuple[range, asyncio.Task[BaseException | None]]] = []
        start = 0
        try:
            while start < len(requests):
                room = self.router.room - leave_room
                if room <= 0:
                    try:
                        async with asyncio.timeout_at(deadline):
                            await self.router.wait_for_room()
                    except TimeoutError:
                        break
                    continue
                wave = range(start, min(len(requests), start + room))
                futures = self.router.expect_many([requests[i].request_id for i in wave])
                for i, fut in zip(wave, futures, strict=True):
                    waiters[i] = fut
                    if on_decided is not None:
                        fut.add_done_callback(lambda f: None if f.cancelled() else on_decided())
                sends.append((wave, asyncio.create_task(self._send([requests[i] for i in wave], futures))))
                start = wave.stop
            awaited = [f for f in waiters if f is not None] + [task for _, task in sends]
            if awaited:
                await asyncio.wait(awaited, timeout=max(0.0, deadline - loop.time()))
            return self._outcomes(requests, waiters, sends)
        finally:
            for _, task in sends:
                task.cancel()
            for request, waiter in zip(requests, waiters, strict=True):
                if waiter is not None:
                    self.router.forget(request.request_id, waiter)

    async def _send(
        self, requests: list[ConversionRequested], futures: list[asyncio.Future[Reply]]
    ) -> BaseException | None:
        """One send for a wave; a failure is returned (and its waiters cancelled: no result can come)."""
        try:
            await self.publisher.publish(requests)
        except Exception as exc:
            for fut in futures:
                fut.cancel()
            return exc
        return None

    @staticmethod
    def _outcomes(
        requests: Sequence[ConversionRequested],
        waiters: list[asyncio.Future[Reply] | None],
        sends: list[tuple[range, asyncio.Task[BaseException | None]]],
    ) -> list[Outcome]:
        failed: dict[int, BackendUnavailable] = {}
        for wave, task in sends:
            error = task.result() if task.done() else None
            if not task.done() or error is not None:
                why = f"{type(error).__name__}" if error is not None else "no acknowledgement within the deadline"
                reason = BackendUnavailable(f"the broker did not take the request ({why})")
                failed.update(dict.fromkeys(wave, reason))
        outcomes: list[Outcome] = []
        for i, (request, fut) in enumerate(zip(requests, waiters, strict=True)):
            if fut is None:
                outcomes.append(Overloaded())
            elif i in failed:
                outcomes.append(failed[i])
            elif not fut.done() or fut.cancelled():
                outcomes.append(ResultTimeout())
            else:
                decision, replayed = fut.result()
                assert isinstance(decision, ConversionAudited | ConversionRejected)
                conflict = _conflict(decision, request)
                outcomes.append(conflict if conflict is not None else (decision, replayed))
        return outcomes


class _Deadline:
    """The callback of a request's deadline timer: cancels the waiting task and remembers that it did."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()


def _conflict(decision: Decision, request: ConversionRequested) -> IdempotencyConflict | None:
    if isinstance(decision, ConversionAudited) and (
        decision.base_currency != request.base_currency
        or decision.target_currency != request.target_currency
        or decision.input_amount != request.amount
        or decision.as_of != (None if request.as_of is None else read_as_of(request.as_of)[0])
    ):
        then = "" if decision.as_of is None else f" as of {decision.as_of.isoformat()}"
        return IdempotencyConflict(
            f"request_id {decision.request_id} converted {decision.input_amount} "
            f"{decision.base_currency}->{decision.target_currency}{then}"
        )
    return None
