"""Contract test of `rate_wire.read_row` (pieces and dict lookups) against the one-regex reader it replaced:
both accept and refuse exactly the same bytes, and read the same row from what they accept (hypothesis over
events CES writes, odd field texts, mutated bytes and arbitrary bytes; the reader's piece caches warm)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ces.domain.money import MAX_DECIMAL_TEXT
from ces.events.rates import RateFetched
from ces.projections.rate_wire import RateRow, read_row
from tests.unit.test_rate_wire import CANONICAL, ODD_FIELD_TEXTS, _with, events, mutated

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The reader as it was (one regex over the decoded text), kept here as the oracle.
_UUID = "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
_AT = "([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.](?!000000)[0-9]{6})?Z)"
_CODE = "([A-Z]{3})"
_VALUE = f'((?=[0-9.]{{1,{MAX_DECIMAL_TEXT}}}")(?:0|[1-9][0-9]*)(?:[.][0-9]+)?)'
_NAME = r'([^"\\\x00-\x1f\x7f]{1,64})'
_LAYOUT = (
    ("event_id", f'"{_UUID}"'),
    ("event_type", '"RateFetched"'),
    ("schema_version", "1"),
    ("occurred_at", f'"{_AT}"'),
    ("rate_id", f'"{_UUID}"'),
    ("base_currency", f'"{_CODE}"'),
    ("target_currency", f'"{_CODE}"'),
    ("rate_value", f'"{_VALUE}"'),
    ("provider_name", f'"{_NAME}"'),
    ("published_at", f'"{_AT}"'),
    ("fetched_at", f'"{_AT}"'),
    ("fetch_id", f'"{_UUID}"'),
)
_ROW = re.compile("{" + ",".join(f'"{name}":{value}' for name, value in _LAYOUT) + "}")


def regex_read_row(raw: bytes) -> RateRow | None:
    try:
        found = _ROW.fullmatch(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if found is None:
        return None
    event_id, occurred, rate_id, base, target, value, provider, published, fetched, fetch_id = found.groups()
    if not value.strip("0."):
        return None
    try:
        datetime.fromisoformat(occurred)
        published_at = datetime.fromisoformat(published)
        fetched_at = datetime.fromisoformat(fetched)
    except ValueError:
        return None
    return RateRow(
        rate_id, base, target, value, provider, published, fetched, fetch_id, event_id, published_at, fetched_at
    )


def assert_same(raw: bytes) -> RateRow | None:
    """Both readers decline `raw`, or both read it to the same row (the second time too: cached pieces)."""
    expected = regex_read_row(raw)
    for _ in range(2):
        row = read_row(raw)
        assert row == expected, raw
        if row is not None:
            assert [type(v) for v in row] == [type(v) for v in expected or ()]
    return expected


@SETTINGS
@given(events)
def test_events_ces_writes_are_read_alike(event: RateFetched) -> None:
    assert_same(event.to_json())


@pytest.mark.parametrize(("field", "text"), [(f, t) for f, texts in ODD_FIELD_TEXTS.items() for t in texts])
def test_odd_field_texts_are_read_alike(field: str, text: str) -> None:
    assert_same(_with(field, text))


EDGES = [
    CANONICAL,
    CANONICAL[:-1],
    CANONICAL + b"\n",
    b"",
    b"{}",
    CANONICAL[:13],
    CANONICAL[:60],
    CANONICAL.replace(b"ecb", b"\xc3\xa9" * 64),  # 64 characters, 128 bytes
    CANONICAL.replace(b"ecb", b"\xc3\xa9" * 65),
    CANONICAL.replace(b"ecb", b"\xf0\x9d\x84\x9e" * 64),  # 256 bytes
    CANONICAL.replace(b"ecb", b"\xed\xa0\x80"),  # an encoded surrogate: not UTF-8
    CANONICAL.replace(b"ecb", b"\xff"),
    CANONICAL.replace(b"ecb", b"a\\u0022b"),
    CANONICAL.replace(b"ecb", b"a\\\\b"),
    CANONICAL.replace(b"ecb", b'","rate_id":"'),
    CANONICAL.replace(b'"rate_value":"1.0850"', b'"rate_value":"1.0850","rate_id":"x"'),
    CANONICAL.replace(b'"rate_value":"1.0850"', b'"rate_value":"0.0"'),
    CANONICAL.replace(b'"rate_value":"1.0850"', b'"rate_value":"0.5"'),
    CANONICAL.replace(b'"rate_value":"1.0850"', b'"rate_value":"' + b"9" * 64 + b'"'),
    CANONICAL.replace(b'"rate_value":"1.0850"', b'"rate_value":"1.' + b"0" * 62 + b'"'),
    CANONICAL.replace(b'"rate_value":"1.0850"', b'"rate_value":"\xd9\xa1"'),  # an Arabic-Indic digit
    CANONICAL.replace(b'"rate_value":"1.0850"', b'"rate_value":"\xef\xbc\x91"'),  # a full-width digit
]


@pytest.mark.parametrize("raw", EDGES)
def test_edges_are_read_alike(raw: bytes) -> None:
    assert_same(raw)


def test_the_canonical_bytes_are_read() -> None:
    assert assert_same(CANONICAL) is not None


@SETTINGS
@given(st.data())
def test_mutated_bytes_are_read_alike(data: Any) -> None:
    assert_same(mutated(data, CANONICAL, 4))


@SETTINGS
@given(
    st.binary(max_size=400)
    | st.builds(
        lambda a, b: a + CANONICAL[len(a) : len(CANONICAL) - len(b)] + b, st.binary(max_size=20), st.binary(max_size=20)
    )
)
def test_arbitrary_bytes_are_read_alike(raw: bytes) -> None:
    assert_same(raw)


def test_every_single_byte_change_is_read_alike() -> None:
    taken = declined = 0
    for at in range(len(CANONICAL)):
        for byte in b'0a9fZ-."\\:T\x00\xc3':
            raw = bytearray(CANONICAL)
            raw[at] = byte
            if assert_same(bytes(raw)) is None:
                declined += 1
            else:
                taken += 1
    assert taken and declined  # both outcomes seen
