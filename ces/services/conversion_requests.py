"""Synchronous conversions for the gateway: publish a request, wait for its one decision.

Idempotency: a request id decided before is answered from PostgreSQL without touching Kafka; a request
id reused with different currencies or amount is a conflict. Otherwise the request is published and
the reply router waits for the worker's result (which, for a request id decided meanwhile, is the stored
decision re-published, so the caller still gets the first decision).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from uuid import UUID

from ces.events.conversions import ConversionAudited, ConversionRejected, ConversionRequested, Decision
from ces.services.ports import DecisionStore, EventPublisher, Replies


class ResultTimeout(Exception):
    pass


class IdempotencyConflict(Exception):
    pass


class BackendUnavailable(Exception):
    pass


class ConversionRequester:
    def __init__(self, store: DecisionStore, publisher: EventPublisher, router: Replies, *, timeout: float) -> None:
        self.store = store
        self.publisher = publisher
        self.router = router
        self.timeout = timeout

    async def convert(
        self, request_id: UUID, base: str, target: str, amount: Decimal, requested_by: UUID | None = None
    ) -> tuple[Decision, bool]:
        """The decision for this request, and whether it was decided before (an idempotent replay).

        One deadline (`timeout`) covers the whole call: the database read, the publish and the wait for
        the result. Running out of it before the request was published means a backend is not answering
        (`BackendUnavailable`); after, that no result came in time (`ResultTimeout`).
        """
        published = False
        try:
            async with asyncio.timeout(self.timeout):
                earlier = (await asyncio.to_thread(self.store.get, [request_id])).get(request_id)
                if earlier is not None:
                    self._check_same(earlier, base, target, amount)
                    return earlier, True
                waiter = self.router.expect(request_id)
                try:
                    request = ConversionRequested(
                        request_id=request_id,
                        base_currency=base,
                        target_currency=target,
                        amount=amount,
                        requested_by=requested_by,
                    )
                    await self.publisher.publish([request])
                    published = True
                    decision = await waiter
                finally:
                    self.router.forget(request_id, waiter)
        except TimeoutError:
            if published:
                raise ResultTimeout from None
            raise BackendUnavailable("the database or the broker did not answer within the deadline") from None
        assert isinstance(decision, ConversionAudited | ConversionRejected)
        self._check_same(decision, base, target, amount)
        return decision, False

    @staticmethod
    def _check_same(decision: Decision, base: str, target: str, amount: Decimal) -> None:
        if isinstance(decision, ConversionAudited) and (
            decision.base_currency != base or decision.target_currency != target or decision.input_amount != amount
        ):
            raise IdempotencyConflict(
                f"request_id {decision.request_id} converted {decision.input_amount} "
                f"{decision.base_currency}->{decision.target_currency}"
            )
