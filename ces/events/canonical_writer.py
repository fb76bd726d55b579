"""The canonical layout's writer side: an event's `to_json()` bytes written without building the model.

The reader side is `canonical.py`; both follow the one layout `Event.to_json()` writes. Used where events
are written in bulk (the backfill: `ces.services.backfill`) or on a hot path (the worker's audits);
tests/unit/test_canonical_writer.py holds what is written here to the model's bytes, and `None` (declined)
sends the caller through the model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from ces.events.base import decimal_text, rfc3339
from ces.events.conversions import ConversionAudited

_ZERO, _WRITABLE_CODE, _WRITABLE_NAME = timedelta(0), re.compile(r"[A-Z]{3}"), re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Codes `_WRITABLE_CODE` accepted (at most 26**3): a set lookup instead of a regex match per event.
_WRITTEN_CODES: set[str] = set()
_AUDITED_VERSION: int = ConversionAudited.model_fields["schema_version"].default


class RateFetchedWriter:
    """`RateFetched(...).to_json()`, byte for byte, for the rates of one publication, without a model per rate
    (the backfill writes 221,702; the model path costs five times as much). Only plain values are taken,
    else None: the caller goes through the model. tests/unit/test_canonical_writer.py holds it to the model."""

    def __init__(self, middle: str, pair: str, tail: str, key: str = "") -> None:  # the texts around ids, code, value
        self._middle, self._pair, self._tail, self._key = middle, pair, tail, key

    @classmethod
    def for_publication(
        cls, *, provider_name: str, base_currency: str, published_at: datetime, fetched_at: datetime, fetch_id: UUID
    ) -> RateFetchedWriter | None:
        """A writer (`occurred_at` is `fetched_at`, as `for_quote` sets it), or None unless the code is upper-case
        ISO, the provider's name plain and the instants UTC."""
        plain = _WRITABLE_CODE.fullmatch(base_currency) and _WRITABLE_NAME.fullmatch(provider_name)
        if not (plain and published_at.utcoffset() == _ZERO == fetched_at.utcoffset()):
            return None
        published, fetched = rfc3339(published_at), rfc3339(fetched_at)
        return cls(  # the event's fields in declaration order, as `to_json()` writes them
            f'","event_type":"RateFetched","schema_version":1,"occurred_at":"{fetched}","rate_id":"',
            f'","base_currency":"{base_currency}","target_currency":"',
            f'","provider_name":"{provider_name}","published_at":"{published}","fetched_at":"{fetched}",'
            f'"fetch_id":"{fetch_id}"}}',
            f"{base_currency}:",  # `key()` up to the target
        )

    def write_all(
        self, event_ids: Sequence[str], rate_ids: Sequence[str], rates: Sequence[tuple[str, Decimal]]
    ) -> list[tuple[bytes, bytes]] | None:
        """`(event.key(), write(...))` for each `(target currency, value)` of `rates` with its ids, in one loop
        (the backfill's: a call per event was a fifth of its encoding), or None if `write` would decline any."""
        middle, pair, tail, key, known = self._middle, self._pair, self._tail, self._key, _WRITTEN_CODES
        encoded = []
        for event_id, rate_id, (target, value) in zip(event_ids, rate_ids, rates, strict=True):
            if target not in known:
                if not _WRITABLE_CODE.fullmatch(target):
                    return None
                known.add(target)
            if not (value.is_finite() and value > 0):
                return None
            encoded.append(
                (
                    f"{key}{target}".encode(),
                    f'{{"event_id":"{event_id}{middle}{rate_id}{pair}{target}","rate_value":"{value:f}{tail}'.encode(),
                )
            )
        return encoded

    def write(self, *, event_id: str, rate_id: str, target_currency: str, rate_value: Decimal) -> bytes | None:
        """The event's bytes (ids as `str(UUID)` text), or None unless the code is upper-case ISO and the value
        finite and positive: `write_all` of one rate."""
        encoded = self.write_all((event_id,), (rate_id,), ((target_currency, rate_value),))
        return None if encoded is None else encoded[0][1]


class ConversionAuditedWriter:
    """`ConversionAudited.to_json()`, byte for byte, without pydantic's serializer (its Python callbacks for four
    decimals and two or more instants were a third of the worker's publish stage). A decision's `occurred_at`
    and `converted_at` are one instant, as are a batch's: the last instant's text is kept. Anything not plain
    (a code that is not upper-case ISO) goes through the model. tests/unit/test_canonical_writer.py holds it
    to the model."""

    def __init__(self) -> None:
        self._instant: datetime | None = None
        self._text = ""

    def _time(self, value: datetime) -> str:
        if value is not self._instant:
            self._instant, self._text = value, rfc3339(value)
        return self._text

    def write(self, d: ConversionAudited) -> bytes:
        if not (_WRITABLE_CODE.fullmatch(d.base_currency) and _WRITABLE_CODE.fullmatch(d.target_currency)):
            return d.to_json()
        rate_ids = '","'.join([str(rate_id) for rate_id in d.rate_ids])
        requested_by = "null" if d.requested_by is None else f'"{d.requested_by}"'
        as_of = "null" if d.as_of is None else f'"{rfc3339(d.as_of)}"'
        return (
            f'{{"event_id":"{d.event_id}","event_type":"ConversionAudited","schema_version":{_AUDITED_VERSION},'
            f'"occurred_at":"{self._time(d.occurred_at)}","audit_id":"{d.audit_id}","request_id":"{d.request_id}",'
            f'"rate_id":"{d.rate_id}","rate_ids":["{rate_ids}"],"rate_kind":"{d.rate_kind}",'
            f'"base_currency":"{d.base_currency}","target_currency":"{d.target_currency}",'
            f'"input_amount":"{decimal_text(d.input_amount)}","rate_value":"{decimal_text(d.rate_value)}",'
            f'"margin":"{decimal_text(d.margin)}","output_amount":"{decimal_text(d.output_amount)}",'
            f'"converted_at":"{self._time(d.converted_at)}","requested_by":{requested_by},"as_of":{as_of}}}'
        ).encode()
