"""Benchmark: the gateway's own Python per `POST /v1/conversions`, without HTTP or Kafka, in CPU microseconds.

What CES does per request besides aiohttp's and aiokafka's work: read and validate the body into the event
(`read_request`), write and sign the event and hand it to the producer (the gateway's publisher, a sender
that acknowledges at once), wait for the result through the reply router under the request's deadline
(`ConversionRequester.convert`, the result routed and decoded as the reply reader does), and write the 201
body (`audit_body`). Each part runs `--n` times, `--repeat` times; the best run's thread CPU per request is
printed. Run it with `PYTHONPATH` on another checkout to measure that checkout's code (before/after).

    python benchmarks/gateway_own.py [--n 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.producer import AckedPublisher as Publisher
from ces.adapters.kafka.replies import ReplyRouter
from ces.events.conversions import ConversionAudited, ConversionRequested
from ces.events.signing import RequestSigner
from ces.http.conversion_input import read_request
from ces.http.schemas import audit_body
from ces.services.conversion_requests import ConversionRequester

BODY = {"base_currency": "EUR", "target_currency": "USD", "amount": "100.00"}
RATE_ID = uuid.uuid4()


def audited(request: ConversionRequested) -> ConversionAudited:
    return ConversionAudited(
        audit_id=uuid.uuid4(),
        request_id=request.request_id,
        rate_id=RATE_ID,
        rate_ids=[RATE_ID],
        rate_kind="direct",
        base_currency="EUR",
        target_currency="USD",
        input_amount=request.amount,
        rate_value=Decimal("1.0892"),
        margin=Decimal("0.01"),
        output_amount=Decimal("107.83"),
        converted_at=request.occurred_at,
        requested_by=request.requested_by,
    )


class InstantBroker:
    """A producer whose sends are acknowledged at once; each request's result is routed on the next loop turn
    (as the reply reader would hand it over), with the bytes the worker would publish for it."""

    def __init__(self, router: ReplyRouter) -> None:
        self.router = router
        self.results: dict[bytes, bytes] = {}

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        assert key is not None
        asyncio.get_running_loop().call_soon(self.router._route, key, self.results.pop(key), [])
        return fut


def read(n: int) -> Callable[[], None]:
    who = uuid.uuid4()
    bodies = [{**BODY, "request_id": str(uuid.uuid4())} for _ in range(n)]

    def run() -> None:
        for body in bodies:
            read_request(
                body,
                idempotency_key=None,
                max_amount=Decimal("1000000000"),
                max_clock_skew=timedelta(seconds=5),
                requested_by=who,
            )

    return run


def body(n: int) -> Callable[[], None]:
    request = ConversionRequested(request_id=uuid.uuid4(), base_currency="EUR", target_currency="USD", amount="100.00")
    audits = [audited(request) for _ in range(n)]

    def run() -> None:
        for audit in audits:
            audit_body(audit)

    return run


def round_trip(n: int) -> Callable[[], None]:
    """Publish (write, sign, send) + wait for the routed result (decode) under the deadline, per request."""
    who = uuid.uuid4()
    requests = [
        ConversionRequested(
            request_id=uuid.uuid4(), base_currency="EUR", target_currency="USD", amount="100.00", requested_by=who
        )
        for _ in range(n)
    ]

    def run() -> None:
        async def main() -> None:
            router = ReplyRouter(KafkaConnection("127.0.0.1:9"), ["a", "r"], max_pending=10)
            broker = InstantBroker(router)
            for request in requests:
                broker.results[request.key()] = audited(request).to_json()
            requester = ConversionRequester(Publisher(broker, "", signer=RequestSigner(b"k" * 32)), router, timeout=10)
            started = time.thread_time()
            for request in requests:
                await requester.convert(request)
            timed.append(time.thread_time() - started)

        timed: list[float] = []
        asyncio.run(main())
        elapsed.append(timed[0])

    elapsed: list[float] = []
    run.elapsed = elapsed  # type: ignore[attr-defined]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    total = 0.0
    for name, make in (("read_request", read), ("publish + reply + deadline", round_trip), ("audit_body", body)):
        run = make(args.n)
        best = float("inf")
        for _ in range(args.repeat):
            started = time.thread_time()
            run()
            spent = time.thread_time() - started
            if hasattr(run, "elapsed"):  # only the requests, not the loop's start and stop
                spent = run.elapsed[-1]
            best = min(best, spent)
        per = best / args.n * 1e6
        total += per
        print(f"{name:<28} {per:7.1f} us/request", flush=True)
    print(f"{'total':<28} {total:7.1f} us/request", flush=True)


if __name__ == "__main__":
    main()
