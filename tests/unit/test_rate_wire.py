"""Differential test of the rate projection's row reader (ces/projections/rate_wire.py) against the full
decoder: whatever bytes `read_row` takes, the full decoder (canonical fast path off) decodes to a
`RateFetched` whose row is the same; everything else declines; and every event CES writes is taken."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ces.domain.rates import Rate
from ces.events.rates import RateFetched
from ces.events.registry import UndecodableEvent, decode
from ces.projections.rate_rows import CurrentRates, RateIds, rate_of
from ces.projections.rate_wire import RateRow, rate_of_row, read_row, row_of
from tests.unit.test_canonical_decoding import _outcome, full_path_only, instants, positive_texts

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

providers = st.text(min_size=1, max_size=64) | st.sampled_from(["ecb", "a" * 64, "fixer.io", "é€", "x\ty", 'q"'])
events = st.builds(
    RateFetched,
    event_id=st.uuids(),
    occurred_at=instants,
    rate_id=st.uuids(),
    base_currency=st.from_regex(r"[A-Z]{3}", fullmatch=True),
    target_currency=st.from_regex(r"[A-Z]{3}", fullmatch=True),
    rate_value=positive_texts,
    provider_name=providers,
    published_at=instants,
    fetched_at=instants,
    fetch_id=st.uuids(),
)


def full_decode(raw: bytes) -> RateFetched | None:
    with full_path_only():
        outcome, event = _outcome(raw, RateFetched)
    return event if outcome == "ok" and isinstance(event, RateFetched) else None


def assert_agrees(raw: bytes) -> RateRow | None:
    """`read_row(raw)` declines, or the full decoder gives the same row; returns what it read."""
    row = read_row(raw)
    if row is not None:
        event = full_decode(raw)
        assert event is not None, raw
        assert row == row_of(event), raw
        assert [type(v) for v in row] == [type(v) for v in row_of(event)]
        assert rate_of_row(row) == rate_of(event)
    return row


@SETTINGS
@given(events)
def test_every_event_ces_writes_is_read_to_its_row(event: RateFetched) -> None:
    raw = event.to_json()
    row = assert_agrees(raw)
    plain = '"' not in event.provider_name and "\\" not in event.provider_name
    plain = plain and not any(ord(c) < 0x20 or c == "\x7f" for c in event.provider_name)
    if plain and len(str(event.rate_value)) <= 64 and len(format(event.rate_value, "f")) <= 64:
        assert row is not None, raw  # the fast path is the path: it declines only what it must
    else:
        assert row is None or row == row_of(event)


# Bytes the reader must decline or read exactly as the full decoder does: each swaps one field's text.
CANONICAL = RateFetched.for_quote(
    provider_name="ecb",
    base_currency="EUR",
    target_currency="USD",
    rate_value=Decimal("1.0850"),
    published_at=datetime(2024, 1, 2, 15, tzinfo=UTC),
    fetched_at=datetime(2024, 1, 2, 15, 5, 0, 123456, tzinfo=UTC),
    fetch_id=uuid.UUID(int=5),
).to_json()
ODD_FIELD_TEXTS = {
    "rate_value": ["0", "0.000", "00.1", "1.", ".5", "-1", "1e5", "1E+2", "1" * 64, "1" * 65, "0." + "0" * 62 + "1"],
    "published_at": [
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-01-02T24:00:00Z",
        "2024-01-02T15:00:60Z",
        "0000-01-01T00:00:00Z",
        "2024-01-02T15:00:00.123Z",
        "2024-01-02T15:00:00.000000Z",
        "2024-01-02T15:00:00+00:00",
        "2024-01-02 15:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00Z",
    ],
    "rate_id": [
        "9DA1CA59-34A4-52DC-8958-07E134C649BA",
        "9da1ca5934a452dc895807e134c649ba",
        "{9da1ca59-34a4-52dc-8958-07e134c649ba}",
        "9da1ca59-34a4-52dc-8958-07e134c649bg",
    ],
    "provider_name": ["", "a" * 64, "a" * 65, "é" * 64, "é" * 65, "x\\ty", "\\u0041", "x\x7fy", "\ud800", "\U0001d11e"],
    "base_currency": ["eur", "EURO", "EÜR", "USD"],
}


def _with(field: str, text: str) -> bytes:
    value = json.dumps(json.loads(CANONICAL)[field])
    return CANONICAL.replace(f'"{field}":{value}'.encode(), f'"{field}":"{text}"'.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(("field", "text"), [(f, t) for f, texts in ODD_FIELD_TEXTS.items() for t in texts])
def test_odd_field_texts_are_declined_or_read_as_the_full_decoder_reads_them(field: str, text: str) -> None:
    raw = _with(field, text)
    assert raw != CANONICAL
    assert_agrees(raw)


def test_the_reader_takes_canonical_bytes_and_declines_what_it_must() -> None:
    assert assert_agrees(CANONICAL) is not None
    assert read_row(_with("rate_value", "1" * 65)) is None  # the full decoder decides on long values
    assert read_row(_with("base_currency", "USD")) is not None  # a pair with itself: the projector refuses it
    assert read_row(CANONICAL.replace(b'"schema_version":1', b'"schema_version":2')) is None
    assert read_row(CANONICAL.replace(b",", b", ", 1)) is None
    assert read_row(CANONICAL + b" ") is None
    assert read_row(b"\xff" + CANONICAL) is None


# Bytes that matter to the readers: digits, hex, signs, JSON punctuation, a control and non-ASCII bytes.
MUTATION_ALPHABET = list(b'0129aAfFzZ-.:T"\\ ,{}\x00\x7f\xc3\xa9\xff')


def mutated(data: Any, raw: bytes, most: int) -> bytes:
    """`raw` with 1 to `most` bytes replaced, inserted or deleted, drawn by hypothesis."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, most))):
        at = data.draw(st.integers(0, len(out) - 1))
        what = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.sampled_from(MUTATION_ALPHABET))
        if what == "replace":
            out[at] = byte
        elif what == "insert":
            out.insert(at, byte)
        else:
            del out[at]
    return bytes(out)


@SETTINGS
@given(st.data())
def test_mutated_bytes_are_declined_or_read_as_the_full_decoder_reads_them(data: Any) -> None:
    assert_agrees(mutated(data, CANONICAL, 3))


def test_random_single_byte_changes_never_disagree() -> None:
    rng = random.Random(11)
    taken = 0
    for _ in range(3000):
        raw = bytearray(CANONICAL)
        at = rng.randrange(len(raw))
        raw[at] = rng.choice(b'0123456789abcdefABCDEF-.:TZ"\\ ,')
        if assert_agrees(bytes(raw)) is not None:
            taken += 1
    assert taken > 0  # digits swapped in ids and values still read: the test saw both outcomes


def test_a_refused_event_is_never_read() -> None:
    # The value must be positive: the full decoder refuses zero, so the reader must decline it.
    raw = _with("rate_value", "0.00")
    assert read_row(raw) is None
    with pytest.raises(UndecodableEvent):
        decode(raw, RateFetched)


def test_current_rates_are_the_rows_rates_and_newest_first_is_the_order_put_many_offers_them() -> None:
    def at(target: str, day: int, minute: int = 5, value: str = "1.5") -> RateFetched:
        return RateFetched.for_quote(
            provider_name="ecb",
            base_currency="EUR",
            target_currency=target,
            rate_value=Decimal(value),
            published_at=datetime(2024, 1, day, 15, tzinfo=UTC),
            fetched_at=datetime(2024, 1, day, 15, minute, tzinfo=UTC),
            fetch_id=uuid.UUID(int=day),
        )

    events = [at("USD", 2), at("JPY", 3), at("USD", 4), at("USD", 4, 6), at("USD", 4, 6, "1.6"), at("JPY", 1)]
    items: list[Rate | RateRow] = [row_of(e) for e in events]
    items[1] = rate_of(events[1])  # a stored row (a `Rate`) among the rows
    current = CurrentRates(items)
    assert current == [rate_of(e) for e in events] and list(current) == [rate_of(e) for e in events]
    chains = current.newest_first()
    # Newest first by published_at then fetched_at; of two equal, the first in the batch.
    assert [list(c) for c in chains] == [
        [rate_of(events[i]) for i in (3, 4, 2, 0)],
        [rate_of(events[i]) for i in (1, 5)],
    ]
    assert current[1:3] == [rate_of(events[1]), rate_of(events[2])]
    ids = RateIds([str(events[0].rate_id), events[1].rate_id])
    assert ids == [events[0].rate_id, events[1].rate_id] and len(ids) == 2


def test_newest_first_reads_the_same_whether_its_newest_is_read_alone_first_or_not() -> None:
    def at(day: int, minute: int, value: str) -> RateRow:
        return row_of(
            RateFetched.for_quote(
                provider_name="ecb",
                base_currency="EUR",
                target_currency="USD",
                rate_value=Decimal(value),
                published_at=datetime(2024, 1, day, 15, tzinfo=UTC),
                fetched_at=datetime(2024, 1, day, 15, minute, tzinfo=UTC),
                fetch_id=uuid.UUID(int=day * 100 + minute),
            )
        )

    # The newest in the middle, an equal of it later (the first stays ahead), older ones either side.
    rows = [at(2, 5, "1.1"), at(4, 6, "1.2"), at(3, 5, "1.3"), at(4, 6, "1.4"), at(1, 5, "1.5"), at(4, 5, "1.6")]
    expected = [rate_of_row(rows[i]) for i in (1, 3, 5, 2, 0, 4)]
    (chain,) = CurrentRates(list(rows)).newest_first()
    assert chain[0:1] == expected[:1] and chain[0] == expected[0]  # what `put_newest` reads first
    assert chain[1:9] == expected[1:] and list(chain) == expected and len(chain) == 6
    (again,) = CurrentRates(list(rows)).newest_first()
    assert list(again) == expected  # iterating from the start gives the same order
    (single,) = CurrentRates([rows[2]]).newest_first()
    assert list(single) == [rate_of_row(rows[2])] and single[0:1] == [rate_of_row(rows[2])]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["USD", "JPY"]), st.integers(1, 3), st.integers(0, 2)), max_size=12))
def test_newest_first_is_a_stable_sort_newest_first_per_pair(keys: list[tuple[str, int, int]]) -> None:
    items: list[Rate | RateRow] = [
        rate_of(
            RateFetched.for_quote(
                provider_name="ecb",
                base_currency="EUR",
                target_currency=target,
                rate_value=Decimal(i + 1),
                published_at=datetime(2024, 1, day, 15, tzinfo=UTC),
                fetched_at=datetime(2024, 1, day, 15, minute, tzinfo=UTC),
                fetch_id=uuid.UUID(int=i),
            )
        )
        for i, (target, day, minute) in enumerate(keys)
    ]
    expected: dict[str, list[Rate | RateRow]] = {}
    for item in items:
        expected.setdefault(item.target_currency, []).append(item)
    for chain_items in expected.values():
        # Python's sort is stable: equals stay in batch order.
        chain_items.sort(key=lambda r: (r.published_at, r.fetched_at), reverse=True)
    chains = CurrentRates(items).newest_first()
    assert [c[0] for c in chains] == [c[0] for c in expected.values()]
    assert [list(c) for c in chains] == list(expected.values())
