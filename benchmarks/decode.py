"""Benchmark: CPU per event of `ces.events.registry.decode`, with the canonical fast path and without it.

"full" is `decode` with the canonical fast path switched off for its rounds (every event through the JSON
scanner and pydantic's validators, as before it); "fast" is `decode` as it is. Each class decodes
`--events` DISTINCT events written by `to_json()` (distinct events cost more than one event decoded again
and again: new strings, UUIDs and models). The variants run alternately, `--rounds` times each; the
script prints the best and the median round of each in microseconds of CPU (`time.thread_time`) per
event: on a shared machine the best round is the least disturbed one. Also `parse_request` (the worker's
lenient reader of `ConversionRequested`) fast and full, and the JSON step alone.

    python benchmarks/decode.py [--events 5000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from ces.events import canonical, requests
from ces.events.base import utc_now
from ces.events.conversions import ConversionAudited, ConversionRejected, ConversionRequested
from ces.events.rates import RateFetched
from ces.events.registry import decode, parse_json_object
from ces.events.requests import parse_request

_READ = canonical.read
_LAYOUT = requests._CANONICAL


def use(fast: bool) -> None:
    canonical.read = _READ if fast else (lambda raw, classes: None)  # type: ignore[assignment]
    requests._CANONICAL = _LAYOUT if fast else None


def audit(i: int) -> bytes:
    return ConversionAudited(
        audit_id=uuid.uuid4(),
        request_id=uuid.uuid4(),
        rate_id=uuid.uuid4(),
        rate_ids=[uuid.uuid4(), uuid.uuid4()],
        rate_kind="cross",
        base_currency="USD",
        target_currency="JPY",
        input_amount=Decimal(1234 + i) / 100,
        rate_value=Decimal("148.6137532133676"),
        margin=Decimal("0.01"),
        output_amount=Decimal(181643 + i),
        converted_at=utc_now() - timedelta(seconds=i),
        requested_by=uuid.uuid4(),
    ).to_json()


def rejection(i: int) -> bytes:
    return ConversionRejected(
        request_id=uuid.uuid4(),
        reason="unknown_currency",
        message=f"base_currency 'XY{i % 10}' is not an ISO 4217 currency CES converts",
        rejected_at=utc_now() - timedelta(seconds=i),
    ).to_json()


def rate(i: int) -> bytes:
    now = utc_now() - timedelta(seconds=i)
    return RateFetched.for_quote(
        provider_name="ecb",
        base_currency="EUR",
        target_currency="USD",
        rate_value=Decimal(10712 + i) / 10000,
        published_at=now,
        fetched_at=now,
        fetch_id=uuid.uuid4(),
    ).to_json()


def request(i: int) -> bytes:
    return ConversionRequested(
        request_id=uuid.uuid4(), base_currency="EUR", target_currency="USD", amount=Decimal(100 + i), requested_by=None
    ).to_json()


def timed(fn: Callable[[bytes], Any], raws: list[bytes]) -> float:
    started = time.thread_time()
    for raw in raws:
        fn(raw)
    return (time.thread_time() - started) / len(raws) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    made = {name: [make(i) for i in range(args.events)] for name, make in (
        ("ConversionAudited", audit), ("ConversionRejected", rejection), ("RateFetched", rate),
        ("ConversionRequested", request),
    )}  # fmt: skip
    for raws in made.values():  # both paths build the same events from these inputs
        use(fast=False)
        full = [decode(raw) for raw in raws[:50]]
        use(fast=True)
        assert [decode(raw) for raw in raws[:50]] == full and canonical.read(raws[0], {}) is None
        assert all(type(canonical.read(raw, {e.event_type: type(e) for e in full})) is type(full[0]) for raw in raws)

    def lenient(raw: bytes) -> Any:
        return parse_request(raw, max_amount=Decimal(10**9))

    # name -> (what runs, on what, fast path on)
    variants: dict[str, tuple[Callable[[bytes], Any], list[bytes], bool]] = {}
    for name, raws in made.items():
        variants[f"decode {name} (full)"] = (decode, raws, False)
        variants[f"decode {name} (fast)"] = (decode, raws, True)
    variants["parse_request ConversionRequested (full)"] = (lenient, made["ConversionRequested"], False)
    variants["parse_request ConversionRequested (fast)"] = (lenient, made["ConversionRequested"], True)
    variants["  JSON step alone, parse_json_object (audit)"] = (parse_json_object, made["ConversionAudited"], True)
    gc.freeze()  # the inputs are not garbage: full collections would walk them in every round
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (fn, raws, fast) in variants.items():
            use(fast)
            results[name].append(timed(fn, raws))
    use(fast=True)
    print(f"us of CPU per event, {args.rounds} alternating rounds of {args.events:,} distinct events (best / median):")
    for name, values in results.items():
        print(f"  {name:48s} {min(values):6.2f} / {statistics.median(values):6.2f}")


if __name__ == "__main__":
    main()
