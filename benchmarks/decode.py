"""Benchmark: CPU per event of `ces.events.registry.decode`, against the previous decoder, in one process.

"previous" is `decode` itself with, for its rounds, the previous event classes (all-Python validators for
decimals and currency codes, the oracle kept in tests/unit/test_decoder_equivalence.py) in the registry
and the previous JSON step (`JSONDecoder.decode` after `json.detect_encoding`). The variants run
alternately, `--rounds` times `--events` decodes each; the script prints the best and the median round
of each in microseconds of CPU (`time.thread_time`) per event: on a shared machine the best round is
the least disturbed one. Also the JSON step and the pydantic step alone.

    python benchmarks/decode.py [--events 5000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ces.events import registry
from ces.events.base import utc_now
from ces.events.conversions import ConversionAudited
from ces.events.rates import RateFetched
from ces.events.registry import EVENT_TYPES, decode, parse_json_object
from tests.unit.test_decoder_equivalence import ORACLES, old_decode

CURRENT = dict(EVENT_TYPES)
PREVIOUS = {event_type: oracle for event_type, (oracle, _) in ORACLES.items()}
_CURRENT_LOADS = registry._loads
_PREVIOUS_DECODER = json.JSONDecoder(object_pairs_hook=registry._unique_keys)


def _previous_loads(raw: bytes | bytearray) -> Any:
    """The JSON step before: `json.loads` with the decoder built once."""
    return _PREVIOUS_DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))


def use(previous: bool) -> None:
    EVENT_TYPES.update(PREVIOUS if previous else CURRENT)
    registry._loads = _previous_loads if previous else _CURRENT_LOADS


def audit() -> bytes:
    return ConversionAudited(
        audit_id=uuid.uuid4(),
        request_id=uuid.uuid4(),
        rate_id=uuid.uuid4(),
        rate_ids=[uuid.uuid4(), uuid.uuid4()],
        rate_kind="cross",
        base_currency="USD",
        target_currency="JPY",
        input_amount=Decimal("1234.56"),
        rate_value=Decimal("148.6137532133676"),
        margin=Decimal("0.01"),
        output_amount=Decimal("181643"),
        converted_at=utc_now(),
    ).to_json()


def rate() -> bytes:
    now = utc_now()
    return RateFetched.for_quote(
        provider_name="ecb",
        base_currency="EUR",
        target_currency="USD",
        rate_value=Decimal("1.0712"),
        published_at=now,
        fetched_at=now,
        fetch_id=uuid.uuid4(),
    ).to_json()


def timed(fn: Callable[[], Any], n: int) -> float:
    started = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    raw_audit, raw_rate = audit(), rate()
    payload = parse_json_object(raw_audit)
    old_audit_class = ORACLES["ConversionAudited"][0]
    # name -> (what runs, with the previous decoder in place)
    variants: dict[str, tuple[Callable[[], Any], bool]] = {
        "decode ConversionAudited (now)": (lambda: decode(raw_audit), False),
        "decode ConversionAudited (previous)": (lambda: decode(raw_audit), True),
        "decode RateFetched (now)": (lambda: decode(raw_rate), False),
        "decode RateFetched (previous)": (lambda: decode(raw_rate), True),
        "  JSON step, parse_json_object (now)": (lambda: parse_json_object(raw_audit), False),
        "  JSON step, parse_json_object (previous)": (lambda: parse_json_object(raw_audit), True),
        "  ConversionAudited.model_validate (now)": (lambda: ConversionAudited.model_validate(payload), False),
        "  ConversionAudited.model_validate (previous)": (lambda: old_audit_class.model_validate(payload), False),
    }
    for raw in (raw_audit, raw_rate):  # both decoders agree on these inputs
        assert decode(raw).model_dump() == old_decode(raw).model_dump()
    use(previous=True)
    assert type(decode(raw_audit)) is old_audit_class and parse_json_object(raw_audit) == payload
    use(previous=False)
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (fn, previous) in variants.items():
            use(previous)
            results[name].append(timed(fn, args.events))
    use(previous=False)
    print(f"us of CPU per event, {args.rounds} alternating rounds of {args.events:,} (best / median):")
    for name, values in results.items():
        print(f"  {name:48s} {min(values):6.2f} / {statistics.median(values):6.2f}")


if __name__ == "__main__":
    main()
