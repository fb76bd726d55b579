"""The rate projection's rows: `RateRow` (one `exchange_rate` row as text), read straight from canonical bytes.

A `RateFetched` written by CES (`to_json()`, or the backfill's canonical writer) has one layout: its
fields in declaration order, no whitespace, lower-case hyphenated UUIDs, plain decimal text, `...Z`
timestamps. `read_row` reads bytes in that layout, and only those, to the row the full decoder's event
gives (`row_of(decode(raw))`), without building the pydantic event: the live projection spends most of
its CPU there otherwise. Anything else (another layout, an escape in the provider's name, a 65-character
value, a date that does not exist, a `.000000` fraction, another schema version) declines (None) and goes through
`ces.events.registry.decode`, which decides. tests/unit/test_rate_wire.py proves it with hypothesis.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple
from uuid import UUID

from ces.domain.money import MAX_DECIMAL_TEXT
from ces.domain.rates import Rate
from ces.events.base import decimal_text, rfc3339
from ces.events.canonical import layout_of
from ces.events.rates import RateFetched


class RateRow(NamedTuple):
    """One `exchange_rate` row: ids and values in their canonical text (what COPY and Redis are given),
    the two instants also as datetimes (what the projection's rules compare)."""

    rate_id: str  # lower-case hyphenated, as `str(UUID)` writes it
    base_currency: str
    target_currency: str
    rate_value: str  # plain decimal text, as `decimal_text` writes it
    provider_name: str
    published: str  # rfc3339 (`...Z`)
    fetched: str
    fetch_id: str
    event_id: str
    published_at: datetime
    fetched_at: datetime


def row_of(event: RateFetched) -> RateRow:
    """The row of a decoded event: what `read_row` gives for its canonical bytes."""
    return RateRow(
        str(event.rate_id),
        event.base_currency,
        event.target_currency,
        decimal_text(event.rate_value),
        event.provider_name,
        rfc3339(event.published_at),
        rfc3339(event.fetched_at),
        str(event.fetch_id),
        str(event.event_id),
        event.published_at,
        event.fetched_at,
    )


def rate_of_row(row: RateRow) -> Rate:
    return Rate(
        rate_id=UUID(row.rate_id),
        base_currency=row.base_currency,
        target_currency=row.target_currency,
        rate_value=Decimal(row.rate_value),
        provider_name=row.provider_name,
        published_at=row.published_at,
        fetched_at=row.fetched_at,
    )


_FIELDS = (
    "event_id",
    "event_type",
    "schema_version",
    "occurred_at",
    "rate_id",
    "base_currency",
    "target_currency",
    "rate_value",
    "provider_name",
    "published_at",
    "fetched_at",
    "fetch_id",
)
# The layout above is `RateFetched` v1's: should the model change (a field, a rule, a version with an
# upcaster), the fast path switches itself off until it is brought up to date.
_ENABLED = (
    tuple(RateFetched.model_fields) == _FIELDS
    and RateFetched.model_fields["schema_version"].default == 1
    and layout_of(RateFetched) is not None
)

# The canonical layout, in the pieces `read_row` cuts it into (ids, values and instants in their texts):
#   HEAD event_id MIDDLE rate_id PAIR rate_value TAIL
# MIDDLE holds the event's own instant, PAIR the currencies, TAIL the provider, instants and fetch id: they
# are the same for every rate of a publication (MIDDLE, TAIL) or a pair (PAIR), so each is checked by its
# pattern once and then found in a dict by its bytes. What is left per row: two ids and a value.
_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# `.000000` declines: `rfc3339` writes no fraction for a whole second, so the row's text would differ.
_AT = rb"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.](?!000000)[0-9]{6})?Z)"
_HEAD = b'{"event_id":"'
_RATE_ID = b'","rate_id":"'
_MIDDLE = re.compile(rb'","event_type":"RateFetched","schema_version":1,"occurred_at":"' + _AT + _RATE_ID)
_PAIR = re.compile(rb'","base_currency":"([A-Z]{3})","target_currency":"([A-Z]{3})","rate_value":"')
_PAIR_LENGTH = len(b'","base_currency":"EUR","target_currency":"USD","rate_value":"')
# No quote, backslash or control character in the provider's name: the text is the name as JSON reads it,
# and COPY needs no escape. At most 64 characters (of UTF-8: up to 256 bytes, counted once decoded).
_TAIL = re.compile(
    rb'","provider_name":"([^"\\\x00-\x1f\x7f]{1,256})","published_at":"'
    + _AT
    + rb'","fetched_at":"'
    + _AT
    + rb'","fetch_id":"('
    + _UUID
    + rb')"}'
)
_HEX = b"0123456789abcdef"
_from_iso = datetime.fromisoformat
_new_row = tuple.__new__
# Pieces already read, by their bytes (only pieces that passed their checks); each cleared when full. A
# topic's partitions hold different pairs and are read at different points of the history, so a
# publication's pieces are met again up to thousands of publications later: the whole ECB history (7,126
# publications) fits, in a few MB.
_middles: set[bytes] = set()
_pairs: dict[bytes, tuple[str, str]] = {}
# provider, published, fetched, fetch_id (texts), then published_at, fetched_at
_tails: dict[bytes, tuple[str, str, str, str, datetime, datetime]] = {}
_KEPT = 16384


def _middle(raw: bytes) -> bool:
    found = _MIDDLE.fullmatch(raw)
    if found is None or _instant(found[1]) is None:
        return False
    if len(_middles) >= _KEPT:
        _middles.clear()
    _middles.add(raw)
    return True


def _pair(raw: bytes) -> tuple[str, str] | None:
    found = _PAIR.fullmatch(raw)
    if found is None:
        return None
    if len(_pairs) >= _KEPT:
        _pairs.clear()
    pair = _pairs[raw] = (found[1].decode(), found[2].decode())
    return pair


def _tail(raw: bytes) -> tuple[str, str, str, str, datetime, datetime] | None:
    found = _TAIL.fullmatch(raw)
    if found is None:
        return None
    try:
        provider = found[1].decode()
    except UnicodeDecodeError:
        return None
    published, fetched = _instant(found[2]), _instant(found[3])
    if len(provider) > 64 or published is None or fetched is None:
        return None
    if len(_tails) >= _KEPT:
        _tails.clear()
    tail = _tails[raw] = (provider, published[0], fetched[0], found[4].decode(), published[1], fetched[1])
    return tail


def _instant(raw: bytes) -> tuple[str, datetime] | None:
    """The text and `datetime.fromisoformat` of an instant `_AT` matched; None for a day or time that does not
    exist (the full decoder refuses it)."""
    text = raw.decode()
    try:
        return text, _from_iso(text)
    except ValueError:
        return None


def read_row(raw: bytes) -> RateRow | None:
    """The row of `raw` when it is a `RateFetched` in the canonical layout the full decoder accepts, else None."""
    if not _ENABLED or raw[:13] != _HEAD:
        return None
    rate_at = raw.find(_RATE_ID, 49) + 13
    # The lookups inline first: a hit (nearly every row of a publication) then costs no call frame.
    if rate_at == 12 or not (raw[49:rate_at] in _middles or _middle(raw[49:rate_at])):
        return None
    value_at = rate_at + 36 + _PAIR_LENGTH
    pair = _pairs.get(raw[rate_at + 36 : value_at]) or _pair(raw[rate_at + 36 : value_at])
    tail_at = raw.find(b'"', value_at)
    if pair is None or tail_at < 0:
        return None
    tail = _tails.get(raw[tail_at:]) or _tail(raw[tail_at:])
    value = raw[value_at:tail_at]
    # `decimal_text`'s: digits (ASCII: bytes), an optional fraction, no leading zero, no exponent, at most
    # MAX_DECIMAL_TEXT characters; zero declines (the model requires a positive value).
    whole, dot, fraction = value.partition(b".")
    if (
        tail is None
        or not whole.isdigit()
        or not (fraction.isdigit() or not dot)
        or (whole[0] == 48 and len(whole) > 1)
        or len(value) > MAX_DECIMAL_TEXT
        or not value.strip(b"0.")
    ):
        return None
    # Both ids lower-case hyphenated, as `str(UUID)` writes them: hex but for a hyphen at 8, 13, 18, 23 of each.
    event_id, rate_id = raw[13:49], raw[rate_at : rate_at + 36]
    ids = event_id + rate_id
    if ids.translate(None, _HEX) != b"--------" or ids[8:24:5] != b"----" or ids[44:60:5] != b"----":
        return None
    # `tuple.__new__`: a NamedTuple's own constructor costs a Python frame more per row.
    return _new_row(
        RateRow,
        (
            rate_id.decode(),
            pair[0],
            pair[1],
            value.decode(),
            tail[0],
            tail[1],
            tail[2],
            tail[3],
            event_id.decode(),
            tail[4],
            tail[5],
        ),
    )
