"""The replay's byte path for audits: the COPY lines of a `ConversionAudited` read straight from its bytes,
when they are in the one layout `to_json()` writes and every value is in the one form whose text is already
what `bulk_audit.copy_decisions` writes for the decoded event; anything else declines (None) and is decoded.

The lines are byte for byte those `copy_decisions` writes for the decoded event (tests/unit/test_audit_rows.py
proves it with hypothesis against the decoder and `bulk_audit`): the same COPY text, so the same rows. What
makes the byte path narrower than the canonical decoder (`ces/events/canonical.py`), so that no value needs
converting:

- UUIDs only as `str(UUID)` writes them (lower-case, hyphenated): any such text is a valid UUID.
- Decimals only where `str(Decimal(text))` is the text itself: plain decimal text (the canonical decoder's
  form) that does not start `0.000000` followed by a digit (there `str` switches to an exponent: `1E-7`).
- Timestamps `...Z` with microseconds absent or non-zero (`isoformat()` drops `.000000`); the row has
  `+00:00` where the event has `Z`, as `isoformat()` writes it. A date that does not exist (February 30th)
  declines: the regex keeps every part in range, and a day from the 29th on is checked with
  `datetime.fromisoformat`, as the canonical decoder reads it.
- One or two rate ids (the row has two rate columns; anything else is the decoder's and `bulk_audit`'s).
- `rate_kind` and the currency codes need no COPY escaping (a literal, `[A-Z]{3}`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

from ces.domain.money import MAX_DECIMAL_TEXT
from ces.events.canonical import layout_of
from ces.events.conversions import ConversionAudited
from ces.projections.replay.model import Prepared

_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Months, days, hours, minutes and seconds in range, year 1 on: what is left for `fromisoformat` to refuse is
# a day 29-31 its month lacks, so only those days are checked.
_TIME = (
    rb"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    rb"(?:\.(?!000000)[0-9]{6})?"
)
_DECIMAL = rb'(?=[^"]{1,%d}")(?!-?0\.0{6}[0-9])-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?' % MAX_DECIMAL_TEXT
_CODE = rb"[A-Z]{3}"

# Each field's JSON value (the model's fields in declaration order, as `to_json()` writes them); a group is
# a value the rows hold. The keys must be the model's fields in order, or the byte path is off (see below).
_FIELDS: Final = {
    "event_id": b'"' + _UUID + b'"',
    "event_type": b'"ConversionAudited"',
    "schema_version": b"3",
    "occurred_at": b'"(' + _TIME + b')Z"',
    "audit_id": b'"(' + _UUID + b')"',
    "request_id": b'"(' + _UUID + b')"',
    "rate_id": b'"' + _UUID + b'"',
    "rate_ids": rb'\["(' + _UUID + rb')"(?:,"(' + _UUID + rb')")?\]',
    "rate_kind": b'"(direct|inverse|cross)"',
    "base_currency": b'"(' + _CODE + b')"',
    "target_currency": b'"(' + _CODE + b')"',
    "input_amount": b'"(' + _DECIMAL + b')"',
    "rate_value": b'"(' + _DECIMAL + b')"',
    "margin": b'"(' + _DECIMAL + b')"',
    "output_amount": b'"(' + _DECIMAL + b')"',
    "converted_at": b'"(' + _TIME + b')Z"',
    "requested_by": b'(?:null|"(' + _UUID + b')")',
    "as_of": b'(?:null|"(' + _TIME + b')Z")',
}


def _regex() -> re.Pattern[bytes] | None:
    # Only while the model is what this was written for, and the canonical decoder reads its layout (no
    # validator of its own, every field a plain type): otherwise every audit is decoded, which is correct.
    if tuple(ConversionAudited.model_fields) != tuple(_FIELDS) or layout_of(ConversionAudited) is None:
        return None
    fields = b",".join(b'"' + name.encode() + b'":' + value for name, value in _FIELDS.items())
    return re.compile(b"{" + fields + b"}")


_AUDITED: Final = _regex()
_NULL = b"\\N"
_UTC = b"+00:00"


def _exists(time: bytes) -> bool:
    if time[8:10] < b"29":
        return True
    try:
        datetime.fromisoformat(time.decode())
    except ValueError:
        return False
    return True


def audited_rows(raw: bytes) -> Prepared | None:
    """`raw`'s `conversion_request` and `conversion_audit` COPY lines, or None (decode it)."""
    if _AUDITED is None:
        return None
    found = _AUDITED.fullmatch(raw)
    if found is None:
        return None
    occurred, audit, request, first, second, kind, base, target, amount, rate, margin, output, converted, by, as_of = (
        found.groups()
    )
    if not (_exists(occurred) and _exists(converted) and (as_of is None or _exists(as_of))):
        return None  # a date the calendar lacks: the decoder refuses it
    fields = (
        audit,
        request,
        first,
        _NULL if second is None else second,
        kind,
        base,
        target,
        amount,
        rate,
        margin,
        output,
        converted + _UTC,
        _NULL if by is None else by,
        _NULL if as_of is None else as_of + _UTC,
    )
    return Prepared(raw, request, (b"%s\taudited\t%s+00:00\n" % (request, occurred), b"\t".join(fields) + b"\n"))
