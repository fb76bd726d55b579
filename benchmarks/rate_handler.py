"""Benchmark: the rate projection's event-loop work a row, in process, on the bundled history's bytes.

Runs `RateEventHandler.handle` on batches of `--batch` canonical `RateFetched` events (the backfill's bytes, as
the worker reads them) with a projector and a cache that do nothing (the projector's thread and Redis are
not in the figure), and prints the thread CPU a row of building the batch consumer's `Received` records and
of `handle`, best of `--rounds`. No stack needed. Run it against another checkout for a before/after pair:
`PYTHONPATH=/path/to/other/checkout python benchmarks/rate_handler.py` (alternate them).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

from ces.adapters.providers.ecb_history import bundled_quotes
from ces.projections.rate_projection import RateEventHandler
from ces.projections.rate_rows import CurrentRates, Projection, RateIds
from ces.services.backfill import backfill_encoded
from ces.services.ports import Received


class _Record:
    """What aiokafka's `ConsumerRecord` offers the batch consumer."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, offset: int, key: bytes, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = "rates-fetched", 0, offset, key, value
        self.timestamp, self.headers = 0, ()


class _Projector:
    def project(self, events: Sequence[Any]) -> Projection:
        result = Projection()
        result.inserted = RateIds([e.rate_id for e in events])
        result.current = CurrentRates(list(events))
        return result


class _Cache:
    async def put_newest(self, chains: Any) -> int:
        return sum(len(chain[0:1]) for chain in chains)  # what `RateCache.put_newest` reads of each pair

    async def revoke(self, *args: Any) -> bool:
        return True


class _DeadLetters:
    async def publish(self, *args: Any) -> None:
        raise AssertionError("the bundled history holds nothing to refuse")


async def _run(records: list[_Record], batch: int, rounds: int) -> tuple[float, float]:
    handler = RateEventHandler(_Projector(), _Cache(), _DeadLetters())  # type: ignore[arg-type]
    best_received = best_handle = float("inf")
    for _ in range(rounds):
        received = handle = 0.0
        for start in range(0, len(records), batch):
            t0 = time.thread_time()
            # As the batch consumer builds them (ces/agents/batch_consumer.py).
            messages = [
                Received(r.topic, r.partition, r.offset, r.key, r.value if r.value is not None else b"", r.timestamp)
                for r in records[start : start + batch]
            ]
            t1 = time.thread_time()
            await handler.handle(messages)
            handle += time.thread_time() - t1
            received += t1 - t0
        best_received = min(best_received, received / len(records) * 1e6)
        best_handle = min(best_handle, handle / len(records) * 1e6)
    return best_received, best_handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2010, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2012, 12, 31))
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    encoded = [pair for quote in bundled_quotes(args.start, args.end) for pair in backfill_encoded(quote)]
    records = [_Record(i, key, value) for i, (key, value) in enumerate(encoded)]
    received, handle = asyncio.run(_run(records, args.batch, args.rounds))
    print(f"{len(records)} events, batches of {args.batch}, best of {args.rounds} (thread CPU a row):")
    print(f"  Received records {received:.2f} us, RateEventHandler.handle {handle:.2f} us")


if __name__ == "__main__":
    main()
