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


_UUID = "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
# `.000000` declines: `rfc3339` writes no fraction for a whole second, so the row's text would differ.
_AT = "([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.](?!000000)[0-9]{6})?Z)"
_CODE = "([A-Z]{3})"
# No leading zero, no exponent, at most MAX_DECIMAL_TEXT characters (the lookahead reaches the quote).
_VALUE = f'((?=[0-9.]{{1,{MAX_DECIMAL_TEXT}}}")(?:0|[1-9][0-9]*)(?:[.][0-9]+)?)'
# No quote, backslash or control character: the text is the name as JSON reads it, and COPY needs no escape.
_NAME = r'([^"\\\x00-\x1f\x7f]{1,64})'
# `RateFetched` v1's fields in declaration order, each with the pattern of its JSON value (quotes included).
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
_FIELDS = tuple(name for name, _ in _LAYOUT)
# The layout above is `RateFetched` v1's: should the model change (a field, a rule, a version with an
# upcaster), the fast path switches itself off until it is brought up to date.
_ENABLED = (
    tuple(RateFetched.model_fields) == _FIELDS
    and RateFetched.model_fields["schema_version"].default == 1
    and layout_of(RateFetched) is not None
)
_from_iso = datetime.fromisoformat
_new_row = tuple.__new__
# Instants read, by their text: a batch of history holds dozens of rates of each publication, all with its
# `published_at` and `fetched_at`; a dict lookup is a third of `fromisoformat`'s cost. Cleared when full.
_instants: dict[str, datetime] = {}
_INSTANTS_KEPT = 4096


def _instant(text: str) -> datetime:
    """`datetime.fromisoformat(text)` (ValueError for a day or time that does not exist), remembered."""
    found = _instants.get(text)
    if found is None:
        if len(_instants) >= _INSTANTS_KEPT:
            _instants.clear()
        found = _instants[text] = _from_iso(text)
    return found


def read_row(raw: bytes) -> RateRow | None:
    """The row of `raw` when it is a `RateFetched` in the canonical layout the full decoder accepts, else None."""
    if not _ENABLED:
        return None
    try:
        found = _ROW.fullmatch(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if found is None:
        return None
    event_id, occurred, rate_id, base, target, value, provider, published, fetched, fetch_id = found.groups()
    if not value.strip("0."):  # zero: the model requires a positive value
        return None
    try:
        _instant(occurred)
        # The lookup inline first: a hit (nearly every row of a publication) then costs no call frame.
        published_at = _instants.get(published) or _instant(published)
        fetched_at = _instants.get(fetched) or _instant(fetched)
    except ValueError:  # a day or time that does not exist: the full decoder refuses it
        return None
    # `tuple.__new__`: a NamedTuple's own constructor costs a Python frame more per row.
    return _new_row(
        RateRow,
        (rate_id, base, target, value, provider, published, fetched, fetch_id, event_id, published_at, fetched_at),
    )
