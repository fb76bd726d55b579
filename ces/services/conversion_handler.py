"""The conversion handler: a batch of `conversion-requests` in, one recorded decision per request out."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from ces.domain.conversion import Rejection, RejectionReason
from ces.domain.rates import DEFAULT_MAX_CLOCK_SKEW
from ces.events.conversions import ConversionAudited
from ces.events.registry import UndecodableEvent
from ces.events.requests import ParsedRequest, parse_request
from ces.events.signing import SIGNATURE_HEADER, RequestVerifier, signature_of
from ces.metrics import CONVERSION_BATCH_SIZE, CONVERSION_STAGE_SECONDS, CONVERSIONS, UNAUTHENTICATED_REQUESTS
from ces.services.conversions import ConversionDecider
from ces.services.ports import DeadLetterSink, DecisionRecorder, EventPublisher, Received

log = logging.getLogger(__name__)


class ConversionHandler:
    """Decide, record (one transaction for the batch), then publish what stands.

    Recording before publishing is what makes the effect exactly-once: a request id decided before
    gets its stored decision re-published, identical, never a second conversion.

    Who asked: a request that names `requested_by` is rejected (`unauthenticated_requester`, recorded with no
    `requested_by`) unless it carries a valid gateway signature (`ces.events.signing`); `verifier` None
    accepts no signature, so every such claim is refused. Requests without `requested_by` need none.
    """

    def __init__(
        self,
        decider: ConversionDecider,
        store: DecisionRecorder,
        publisher: EventPublisher,
        dead_letters: DeadLetterSink,
        *,
        max_amount: Decimal,
        verifier: RequestVerifier | None = None,
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    ) -> None:
        self.decider = decider
        self.store = store
        self.publisher = publisher
        self.dead_letters = dead_letters
        self.max_amount = max_amount
        self.verifier = verifier or RequestVerifier(())
        self.max_clock_skew = max_clock_skew

    async def handle(self, batch: Sequence[Received]) -> int:
        started = time.perf_counter()
        requests: dict[object, ParsedRequest] = {}
        poison: list[tuple[Received, UndecodableEvent]] = []
        for message in batch:
            try:
                parsed = parse_request(message.value, max_amount=self.max_amount, max_clock_skew=self.max_clock_skew)
            except UndecodableEvent as exc:
                poison.append((message, exc))
                continue
            if parsed.requested_by is not None:
                parsed = self._authenticated(parsed, message)
            requests.setdefault(parsed.request_id, parsed)  # in-batch duplicates: one decision, one result
        standing = []
        if requests:
            CONVERSION_BATCH_SIZE.observe(len(requests))
            started = _stage("parse", started)
            decisions = await self.decider.decide(list(requests.values()))
            started = _stage("decide", started)
            standing = await self.store.record(decisions)
            started = _stage("record", started)
            # A standing decision that is not the one just made (the store returns that very object) was
            # stored before, for a repeated request id: it goes out marked, so the gateway can say
            # "replayed" without reading the database.
            made = {d.request_id: d for d in decisions}
            fresh = [s for s in standing if s is made[s.request_id]]
            again = [s for s in standing if s is not made[s.request_id]]
            if fresh:
                await self.publisher.publish(fresh)
            if again:
                await self.publisher.publish(again, republished=True)
            _stage("publish", started)
        # Dead letters go last: a batch that fails earlier (database down) is retried whole by the batch
        # consumer, and nothing was dead-lettered twice.
        for message, error in poison:
            await self.dead_letters.publish(message, error.reason, error.detail)
        if not standing:
            return 0
        audited = sum(isinstance(d, ConversionAudited) for d in standing)
        _AUDITED.inc(audited)
        if audited != len(standing):
            _REJECTED.inc(len(standing) - audited)
        return len(standing)

    def _authenticated(self, parsed: ParsedRequest, message: Received) -> ParsedRequest:
        """`parsed` if its signature holds; else its rejection, with the unproven `requested_by` dropped."""
        failure = self.verifier.failure(message.value, signature_of(message.headers))
        if failure is None:
            return parsed
        UNAUTHENTICATED_REQUESTS.labels(failure).inc()
        log.warning(
            "request %s claims requested_by %s without a valid gateway signature (%s): rejected",
            parsed.request_id,
            parsed.requested_by,
            failure,
        )
        rejection = Rejection(
            RejectionReason.UNAUTHENTICATED_REQUESTER,
            f"requested_by {parsed.requested_by} is not authenticated: the `{SIGNATURE_HEADER}` header is "
            f"{_FAILURES[failure]}; only the CES gateway may name who asked (leave requested_by out)",
        )
        return dataclasses.replace(parsed, valid=None, rejection=rejection, requested_by=None)


_FAILURES = {
    "missing": "missing",
    "malformed": "malformed",
    "unknown_key": "signed with a key this worker does not accept",
    "mismatch": "not a valid signature of this request",
}


# Each label's child looked up once: `labels()` takes a lock and builds a key per call, and a batch at light
# load is one request, so per-batch bookkeeping counts as much as per-request work.
_STAGES = {name: CONVERSION_STAGE_SECONDS.labels(name) for name in ("parse", "decide", "record", "publish")}
_AUDITED = CONVERSIONS.labels("audited")
_REJECTED = CONVERSIONS.labels("rejected")


def _stage(name: str, started: float) -> float:
    now = time.perf_counter()
    _STAGES[name].observe(now - started)
    return now
