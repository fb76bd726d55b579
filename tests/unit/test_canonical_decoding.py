"""Differential test of the canonical fast path (ces/events/canonical.py) against the full decoder: for every
input, `decode` with the fast path gives the same event (same class, field values and types, `__dict__`,
fields set, `model_dump`, `to_json()`) or the same refusal (reason and detail) as without it, and the fast
path itself either builds that event or declines. Same for `parse_request` and its canonical payload.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict

from ces.domain.conversion import RejectionReason
from ces.events import canonical, requests
from ces.events.base import Event
from ces.events.conversions import ConversionAudited, ConversionRejected, ConversionRequested
from ces.events.rates import RateFetched, RateFetchFailed, RateRevoked
from ces.events.registry import EVENT_TYPES, UndecodableEvent, decode, parse_json_object
from ces.events.requests import parse_request
from tests.strategies import audits_of
from tests.unit.test_decoder_equivalence import NASTY_BYTES, VALID, _same_value

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def full_path_only() -> Iterator[None]:
    with (
        mock.patch.object(canonical, "read", return_value=None),
        mock.patch.object(requests, "_CANONICAL", None),
    ):
        yield


def _outcome(raw: Any, expected: Any = None) -> tuple[str, Any]:
    try:
        return ("ok", decode(raw, expected))
    except UndecodableEvent as exc:
        return ("refused", (exc.reason, exc.detail))


def assert_same_event(fast: Event, full: Event) -> None:
    assert type(fast) is type(full)
    assert list(fast.__dict__) == list(full.__dict__)
    for name in type(full).model_fields:
        assert _same_value(getattr(fast, name), getattr(full, name)), (name, getattr(fast, name), getattr(full, name))
    assert fast.model_fields_set == full.model_fields_set and type(fast.model_fields_set) is set
    assert fast.__pydantic_extra__ is full.__pydantic_extra__ and fast.__pydantic_private__ is full.__pydantic_private__
    assert fast == full and fast.model_dump() == full.model_dump() and _to_json(fast) == _to_json(full)


def _to_json(event: Event) -> bytes | str:
    try:
        return event.to_json()
    except ValueError as exc:  # the full decoder takes "\ud800" escapes its serializer refuses
        return type(exc).__name__


def assert_agrees(raw: Any, expected: Any = None) -> bool:
    """`decode` agrees with and without the fast path on `raw`; True when the fast path took it."""
    with full_path_only():
        full = _outcome(raw, expected)
    fast = _outcome(raw, expected)
    assert fast[0] == full[0], (raw, fast, full)
    if full[0] == "ok":
        assert_same_event(fast[1], full[1])
    else:
        assert fast[1] == full[1]
    taken = canonical.read(raw, EVENT_TYPES) if type(raw) is bytes else None
    allowed = (expected,) if isinstance(expected, type) else expected
    # The fast path never builds what the full decoder refuses, nor anything else.
    if taken is not None and (not allowed or type(taken) in allowed):
        assert full[0] == "ok", (raw, full)
        assert_same_event(taken, full[1])
        return True
    return False


# --- canonical events from random valid values ------------------------------------------------------------

ODD_TEXT = ['"', "\\", '\\"', "\\u0041", "\x00", "\x01\x1f", "\x7f", "\u2028\u2029", "é", "€𝄞", "\ufeff", "/", "</"]
texts = st.one_of(
    st.text(min_size=1, max_size=40),
    st.lists(st.sampled_from(ODD_TEXT), min_size=1, max_size=5).map("".join),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20),
)
decimal_texts = st.from_regex(r"-?(0|[0-9]{1,30})(\.[0-9]{0,25})?|-?\.[0-9]{1,25}", fullmatch=True)
positive_texts = decimal_texts.filter(lambda t: Decimal(t) > 0)
instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | st.timezones()
) | st.sampled_from([datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)])
codes = st.from_regex(r"[A-Z]{3}", fullmatch=True)
uuids = st.uuids()


def _events() -> list[st.SearchStrategy[Event]]:
    common: dict[str, Any] = {"event_id": uuids, "occurred_at": instants}
    return [
        audits_of(decimal_texts, instants, min_rate_ids=0),
        st.builds(
            ConversionRejected,
            **common,
            request_id=uuids,
            reason=st.sampled_from(list(RejectionReason)),
            message=texts | st.just(""),
            rejected_at=instants,
            requested_by=st.none() | uuids,
            as_of=st.none() | instants,
        ),
        st.builds(
            RateFetched,
            **common,
            rate_id=uuids,
            base_currency=codes,
            target_currency=codes,
            rate_value=positive_texts,
            provider_name=texts.filter(lambda t: len(t) <= 64),
            published_at=instants,
            fetched_at=instants,
            fetch_id=uuids,
        ),
        st.builds(
            ConversionRequested,
            **common,
            request_id=uuids,
            base_currency=codes,
            target_currency=codes,
            amount=decimal_texts,
            requested_by=st.none() | uuids,
            as_of=st.none() | st.sampled_from(["2026-01-01", "2026-11-25T20:12:42Z", "2026-11-25t20:12:42.5+05:30"]),
        ),
        st.builds(
            RateRevoked,
            **common,
            rate_id=uuids,
            base_currency=codes,
            target_currency=codes,
            reason=texts,
            revoked_by=texts,
            revoked_at=instants,
        ),
        st.builds(
            RateFetchFailed,
            **common,
            provider_name=texts,
            fetch_id=uuids,
            attempts=st.integers(1, 10**12),
            retry_delays_ms=st.lists(st.integers(0, 10**15), max_size=4),
            last_error=texts,
            retryable=st.booleans(),
            failed_at=instants,
        ),
    ]


EVENTS = _events()
events = st.one_of(EVENTS)
requests_made = EVENTS[3]


@SETTINGS
@given(event=events)
def test_canonical_events_take_the_fast_path_to_the_same_event(event: Event) -> None:
    raw = event.to_json()
    assert assert_agrees(raw), raw  # every event CES writes (these values) is read by the fast path
    assert assert_agrees(raw, type(event))
    assert_agrees(raw, (ConversionAudited, ConversionRejected))  # another topic's type: refused the same
    fast = decode(raw)
    assert fast == event and fast.to_json() == raw  # and it is the event that was written


# --- byte-level mutations of canonical bytes --------------------------------------------------------------

TOKENS = [
    b" ", b"\n", b"\t", b'"', b"\\", b",", b":", b"{", b"}", b"[", b"]", b"null", b"true", b"0", b"-0", b"00", b"01",
    b"1e5", b"1E-7", b"NaN", b"-Infinity", b".", b"-", b"\\u0041", b"\\ud800", b"\\u0000", b"\x00", b"\x1f", b"\xff",
    b"\xed\xa0\x80", b"\xc3\xa9", b"A", b"a", b"F", b"Z", b"z", b"+00:00", b"T", b" ", b"9" * 70,
]  # fmt: skip


def _mutate(raw: bytes, rng: random.Random, how: str) -> bytes:
    if how == "flip":
        at = rng.randrange(len(raw))
        return raw[:at] + bytes([raw[at] ^ (1 << rng.randrange(8))]) + raw[at + 1 :]
    if how == "insert":
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + rng.choice(TOKENS) + raw[at:]
    if how == "delete":
        at = rng.randrange(len(raw))
        return raw[:at] + raw[at + rng.randint(1, 3) :]
    if how == "replace":
        at = rng.randrange(len(raw))
        return raw[:at] + rng.choice(TOKENS) + raw[at + rng.randint(1, 8) :]
    payload = json.loads(raw)
    if how == "reorder":
        items = list(payload.items())
        rng.shuffle(items)
        return json.dumps(dict(items), separators=(",", ":"), ensure_ascii=False).encode()
    if how == "duplicate":
        key = rng.choice(sorted(payload))
        return raw[:-1] + b"," + json.dumps({key: payload[key]}, separators=(",", ":")).encode()[1:]
    if how == "spaced":
        return json.dumps(payload, ensure_ascii=rng.random() < 0.5).encode()
    if how == "upper":  # upper-case UUIDs and hex, lower-case codes, and so on: a case flip of one run
        at = rng.randrange(len(raw))
        end = min(len(raw), at + rng.randint(1, 40))
        part = raw[at:end]
        return raw[:at] + (part.upper() if rng.random() < 0.5 else part.lower()) + raw[end:]
    # "value": one field's value replaced by a nasty one, written as JSON
    key = rng.choice(sorted(payload))
    payload[key] = rng.choice(NASTY_VALUES)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode()


NASTY_VALUES: list[Any] = [
    None, True, 0, 1, -1, 1.5, 10**30, float("nan"), "", "-0", "0", "00", "01.5", "1.", ".5", "-.5", "1e5", "1E+2",
    "NaN", "Infinity", "+1", " 1", "1 ", "١٢٣", "9" * 65, "0." + "1" * 62, "0." + "1" * 63, "usd", "US", "USD\n",
    "AAAAAAAA-AAAA-4AAA-8AAA-AAAAAAAAAAAA", "{aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa}",
    "aaaaaaaaaaaa4aaa8aaaaaaaaaaaaaaa",
    "urn:uuid:aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaa", "2026-11-25T20:12:42",
    "2026-11-25T20:12:42.123Z", "2026-11-25T20:12:42.1234567Z", "2026-02-30T00:00:00Z", "2026-11-25T24:00:00Z",
    "2026-11-25T23:59:60Z", "0000-01-01T00:00:00Z", "2026-11-25T20:12:42+00:00", "2026-11-25 20:12:42Z",
    "2026-11-25T20:12:42z", "9999-12-31T23:59:59.999999Z", [], ["x"], {}, "direct", "cross ", "unknown_currency",
    "\ud800", "a\x00b", "x" * 65, "x" * 1001, 3, 2, "3",
]  # fmt: skip
MUTATIONS = ["flip", "insert", "delete", "replace", "reorder", "duplicate", "spaced", "upper", "value"]


@SETTINGS
@given(event=events, seed=st.integers(0, 2**32), how=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3))
@example(event=ConversionAudited.model_validate(VALID[ConversionAudited]), seed=0, how=["upper"])
def test_mutated_canonical_bytes_agree(event: Event, seed: int, how: list[str]) -> None:
    rng = random.Random(seed)
    raw = event.to_json()
    for step in how:
        try:
            raw = _mutate(raw, rng, step)
        except (ValueError, IndexError):  # no longer JSON (or empty): the byte-level mutations go on
            raw = _mutate(raw, rng, "flip") if raw else raw
    assert_agrees(raw)
    assert_agrees(raw, type(event))


# --- targeted inputs --------------------------------------------------------------------------------------


def _canonical(cls: type[Event], **changes: Any) -> bytes:
    return cls.model_validate({**VALID[cls], **changes}).to_json()


AUDIT = _canonical(ConversionAudited)
TARGETED = [
    AUDIT,
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"-0"'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"-0.00"'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"00.01"'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"1e-2"'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"NaN"'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":NaN'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":0.01'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"0.' + b"1" * 62 + b'"'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"0.' + b"1" * 63 + b'"'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"' + b"1" * 64 + b'"'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"' + b"1" * 65 + b'"'),
    AUDIT.replace(b'"margin":"0.01"', b'"margin":"0.01\\u0030"'),
    AUDIT.replace(b'"USD"', b'"usd"'),
    AUDIT.replace(b'"USD"', b'"U\\u0053D"'),
    AUDIT.replace(b"aaaaaaaa-", b"AAAAAAAA-"),
    AUDIT.replace(b'"aaaaaaaa-0000-4000-8000-aaaaaaaaaaaa"', b'"{aaaaaaaa-0000-4000-8000-aaaaaaaaaaaa}"'),
    AUDIT.replace(b'"aaaaaaaa-0000-4000-8000-aaaaaaaaaaaa"', b'"aaaaaaaa00004000-8000-aaaaaaaaaaaa"'),
    AUDIT.replace(b'"aaaaaaaa-0000-4000-8000-aaaaaaaaaaaa"', b'"\\u0061aaaaaaa-0000-4000-8000-aaaaaaaaaaaa"'),
    AUDIT.replace(b'"aaaaaaaa-0000-4000-8000-aaaaaaaaaaaa"', b'"aaaaaaaa-0000-4000-8000-aaaaaaaaaaaa\\n"'),
    AUDIT.replace(b'"aaaaaaaa-0000-4000-8000-aaaaaaaaaaaa"', b'"aaaaaaaa-0000-4000-8000-aaaaaaaaaaa\x01"'),
    AUDIT.replace(b'"rate_ids":[', b'"rate_ids":["AAAAAAAA-0000-4000-8000-aaaaaaaaaaaa",'),
    AUDIT.replace(b'"rate_ids":[', b'"rate_ids":["\\u0061aaaaaaa-0000-4000-8000-aaaaaaaaaaaa",'),
    AUDIT.replace(b'"rate_ids":[', b'"rate_ids":[ '),
    AUDIT.replace(b"20:12:42.123456Z", b"20:12:42Z"),
    AUDIT.replace(b"20:12:42.123456Z", b"20:12:42.123Z"),
    AUDIT.replace(b"20:12:42.123456Z", b"20:12:42.123456+00:00"),
    AUDIT.replace(b"20:12:42.123456Z", b"20:12:60.123456Z"),
    AUDIT.replace(b"20:12:42.123456Z", b"24:00:00.000000Z"),
    AUDIT.replace(b"2026-11-25T", b"0000-11-25T"),
    AUDIT.replace(b"2026-11-25T", b"2026-02-30T"),
    AUDIT.replace(b"2026-11-25T", b"\xd9\xa2026-11-25T"),
    AUDIT.replace(b'"schema_version":3', b'"schema_version":2'),
    AUDIT.replace(b'"schema_version":3', b'"schema_version":3.0'),
    AUDIT.replace(b'"requested_by":null', b'"requested_by":"aaaaaaaa-0000-4000-8000-aaaaaaaaaaaa"'),
    AUDIT.replace(b'"as_of":null', b'"as_of":"2026-11-25T20:12:42Z"'),
    AUDIT.replace(b'"as_of":null', b'"as_of":"2026-11-25"'),
    AUDIT.replace(b'"as_of":null}', b'"as_of":null,"as_of":null}'),
    AUDIT.replace(b'"as_of":null}', b'"as_of":null,"extra":1}'),
    AUDIT.replace(b'"as_of":null}', b'"as_of":null} '),
    AUDIT[:-1],
    b"\xef\xbb\xbf" + AUDIT,
    _canonical(ConversionRejected, message='quote " backslash \\ nul \x00 \u2028 é 𝄞'),
    _canonical(ConversionRejected).replace(b'"no such currency"', b'"\\ud800"'),
    _canonical(ConversionRejected).replace(b'"no such currency"', b'"\\ud83d\\ude00"'),
    _canonical(ConversionRejected).replace(b'"no such currency"', b'"\\x41"'),
    _canonical(ConversionRejected).replace(b'"no such currency"', b'"\t"'),
    _canonical(ConversionRejected).replace(b'"no such currency"', b'"\xed\xa0\x80"'),
    _canonical(ConversionRejected).replace(b'"unknown_currency"', b'"UNKNOWN_CURRENCY"'),
    _canonical(RateFetched).replace(b'"1.0712"', b'"0"'),
    _canonical(RateFetched).replace(b'"1.0712"', b'"0.0000"'),
    _canonical(RateFetched).replace(b'"1.0712"', b'"-1.0712"'),
    _canonical(RateFetched).replace(b'"ecb"', b'""'),
    _canonical(RateFetched).replace(b'"ecb"', b'"' + b"e" * 65 + b'"'),
    _canonical(RateFetched).replace(b'"ecb"', b'"' + "é".encode() * 64 + b'"'),
    _canonical(ConversionRequested, as_of="2026-01-01"),
    _canonical(ConversionRequested, as_of="2026-01-01").replace(b"2026-01-01", b"2026-01-01\\n"),
    _canonical(ConversionRequested, as_of="2026-01-01").replace(b"2026-01-01", b"yesterday"),
    _canonical(ConversionRequested).replace(b'"100.00"', b'"100.001"'),
    _canonical(ConversionRequested).replace(b'"EUR"', b'"XYZ"'),
]


@pytest.mark.parametrize("raw", TARGETED + NASTY_BYTES, ids=range(len(TARGETED) + len(NASTY_BYTES)))
def test_targeted_and_nasty_inputs_agree(raw: Any) -> None:
    for expected in (None, ConversionAudited, (ConversionAudited, ConversionRejected), RateFetched):
        assert_agrees(raw, expected)
    assert_request_agrees(raw)


def test_the_fast_path_takes_what_ces_writes_and_declines_the_rest() -> None:
    # The properties above would hold if the fast path declined everything: it must take canonical bytes.
    for cls in VALID:
        assert assert_agrees(_canonical(cls)), cls
    margin = b'"margin":"0.01"'
    for taken in (b'"margin":"-0"', b'"margin":"0.' + b"1" * 62 + b'"', b'"margin":"' + b"1" * 64 + b'"'):
        assert assert_agrees(AUDIT.replace(margin, taken)), taken
    # The full decoder's own UUID schema: the same UUID from upper case or braces.
    assert assert_agrees(AUDIT.replace(b"aaaaaaaa-", b"AAAAAAAA-"))
    for declined in (
        AUDIT.replace(margin, b'"margin":"00.01"'),  # read by the full decoder, not canonical
        AUDIT.replace(margin, b'"margin":"0.' + b"1" * 63 + b'"'),  # refused by the full decoder
        AUDIT.replace(b"20:12:42.123456Z", b"20:12:42.123Z"),
        AUDIT.replace(b"20:12:42.123456Z", b"20:12:42.123456+00:00"),
        AUDIT.replace(b'"as_of":null}', b'"as_of":null} '),
        AUDIT.replace(b'"as_of":null}', b'"as_of":null,"as_of":null}'),
        AUDIT.replace(b'"USD"', b'"U\\u0053D"'),
        AUDIT.replace(b'"schema_version":3', b'"schema_version":2'),
    ):
        assert not assert_agrees(declined), declined
    assert all(canonical.layout_of(cls) is not None for cls in EVENT_TYPES.values())


# --- the lenient request reader ---------------------------------------------------------------------------


def assert_request_agrees(raw: Any) -> None:
    layout = canonical.layout_of(ConversionRequested)
    assert layout is not None
    with full_path_only():
        full = _request_outcome(raw)
    assert _request_outcome(raw) == full
    payload = layout.payload(raw) if type(raw) is bytes else None
    if payload is not None:
        assert _typed(payload) == _typed(parse_json_object(raw))


def _typed(value: Any) -> Any:
    """`value` with every scalar's type beside it: `==` says 1 == 1.0 == True."""
    if isinstance(value, dict):
        return [(k, _typed(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value), value)


# One instant for both paths: an `as_of` judged "in the future" names the reader's clock in its message.
FROZEN_NOW = datetime(2026, 11, 25, 20, 12, 42, 123456, tzinfo=UTC)


def _request_outcome(raw: Any) -> Any:
    try:
        with mock.patch("ces.events.requests.utc_now", return_value=FROZEN_NOW):
            parsed = parse_request(raw, max_amount=Decimal(10**9), max_clock_skew=timedelta(days=1))
    except UndecodableEvent as exc:
        return ("refused", exc.reason, exc.detail)
    except TypeError as exc:  # None (a tombstone): its caller's to handle, either way
        return ("error", str(exc))
    return ("ok", parsed)


@SETTINGS
@given(event=requests_made, seed=st.integers(0, 2**32), how=st.lists(st.sampled_from(MUTATIONS), max_size=2))
def test_parse_request_agrees(event: ConversionRequested, seed: int, how: list[str]) -> None:
    rng = random.Random(seed)
    raw = event.to_json()
    for step in how:
        try:
            raw = _mutate(raw, rng, step)
        except (ValueError, IndexError):
            raw = _mutate(raw, rng, "flip") if raw else raw
    assert_request_agrees(raw)


def test_canonical_requests_take_the_fast_path() -> None:
    layout = canonical.layout_of(ConversionRequested)
    assert layout is not None
    for as_of in (None, "2026-01-01", "2026-11-25T20:12:42.5+05:30"):
        raw = _canonical(ConversionRequested, as_of=as_of)
        assert layout.payload(raw) == parse_json_object(raw)
        assert_request_agrees(raw)


def test_tz_of_a_fast_timestamp_is_utc() -> None:
    event = decode(AUDIT)
    assert isinstance(event, ConversionAudited)
    assert event.converted_at.tzinfo is UTC


def test_a_class_the_fast_path_cannot_read_exactly_has_no_layout() -> None:
    from pydantic import field_validator

    class Scored(Event):
        event_type: Literal["Scored"] = "Scored"
        schema_version: Literal[1] = 1
        score: float

    class Checked(Event):
        event_type: Literal["Checked"] = "Checked"
        schema_version: Literal[1] = 1
        name: str

        @field_validator("name")
        @classmethod
        def _upper(cls, value: str) -> str:
            return value.upper()

    class Stripped(Checked):
        model_config = ConfigDict(str_strip_whitespace=True)

    for event in (Scored(score=1.5), Checked(name=" x "), Stripped(name=" x ")):
        cls = type(event)
        assert canonical.layout_of(cls) is None, cls
        assert canonical.read(event.to_json(), {cls.model_fields["event_type"].default: cls}) is None
