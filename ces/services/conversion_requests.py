"""Synchronous conversions for the gateway: publish a request, wait for its one decision.

No database read on this path: every request is published, and the worker answers it. A request id
decided before is answered by the worker with its stored decision, re-published and marked as such
(`REPUBLISHED_HEADER`), so the caller gets the first decision and learns that it is a replay; a request
id reused with different currencies or amount is a conflict, found by comparing that decision with the
request. A repeat costs a Kafka round trip instead of a PostgreSQL one; a new request, the common case,
saves the read it never needed (docs/http.md).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from uuid import UUID

from ces.domain.as_of import read_as_of
from ces.events.conversions import ConversionAudited, ConversionRejected, ConversionRequested, Decision
from ces.services.ports import EventPublisher, Replies


class ResultTimeout(Exception):
    pass


class IdempotencyConflict(Exception):
    pass


class BackendUnavailable(Exception):
    pass


class ConversionRequester:
    def __init__(self, publisher: EventPublisher, router: Replies, *, timeout: float) -> None:
        self.publisher = publisher
        self.router = router
        self.timeout = timeout

    async def convert(
        self,
        request_id: UUID,
        base: str,
        target: str,
        amount: Decimal,
        requested_by: UUID | None = None,
        as_of: str | None = None,
    ) -> tuple[Decision, bool]:
        """The decision for this request, and whether it was decided before (an idempotent replay).

        One deadline (`timeout`) covers the whole call: the publish and the wait for the result. Running
        out of it before the broker acknowledged the request means the broker is not answering
        (`BackendUnavailable`); after, that no result came in time (`ResultTimeout`).
        """
        published = False
        try:
            async with asyncio.timeout(self.timeout):
                waiter = self.router.expect(request_id)
                try:
                    request = ConversionRequested(
                        request_id=request_id,
                        base_currency=base,
                        target_currency=target,
                        amount=amount,
                        requested_by=requested_by,
                        as_of=as_of,
                    )
                    await self.publisher.publish([request])
                    published = True
                    decision, replayed = await waiter
                finally:
                    self.router.forget(request_id, waiter)
        except TimeoutError:
            if published:
                raise ResultTimeout from None
            raise BackendUnavailable("the broker did not acknowledge the request within the deadline") from None
        assert isinstance(decision, ConversionAudited | ConversionRejected)
        self._check_same(decision, base, target, amount, as_of)
        return decision, replayed

    @staticmethod
    def _check_same(decision: Decision, base: str, target: str, amount: Decimal, as_of: str | None) -> None:
        if isinstance(decision, ConversionAudited) and (
            decision.base_currency != base
            or decision.target_currency != target
            or decision.input_amount != amount
            or decision.as_of != (None if as_of is None else read_as_of(as_of)[0])
        ):
            then = "" if decision.as_of is None else f" as of {decision.as_of.isoformat()}"
            raise IdempotencyConflict(
                f"request_id {decision.request_id} converted {decision.input_amount} "
                f"{decision.base_currency}->{decision.target_currency}{then}"
            )
