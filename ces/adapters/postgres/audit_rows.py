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

`audited_batch` does the same for a fetched batch's audits at once: a regex pass (`findall`) and the COPY texts
joined in C per slice of 1,000 of them, where `audited_rows` runs Python per record. Its texts are those rows too,
written so that no per-record Python is needed: times keep their `Z` (PostgreSQL reads the same instant),
NULL is an empty field (`NULL ''`: no value it takes is empty), the request columns in the record's order.
It takes a batch only when `audited_rows` takes every record, no request id comes twice and no date is a
February 29th; otherwise each record goes `audited_rows`' way (tests/unit/test_audit_batch.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from operator import itemgetter
from typing import Final

from ces.domain.money import MAX_DECIMAL_TEXT
from ces.events.canonical import layout_of
from ces.events.conversions import ConversionAudited
from ces.projections.replay.model import Prepared, PreparedBatch

_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CLOCK = rb"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.(?!000000)[0-9]{6})?"
# Months, days, hours, minutes and seconds in range, year 1 on: what is left for `fromisoformat` to refuse is
# a day 29-31 its month lacks, so only those days are checked.
_TIME = rb"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])" + _CLOCK
_DECIMAL = rb'(?=[^"]{1,%d}")(?!-?0\.0{6}[0-9])-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?' % MAX_DECIMAL_TEXT
_CODE = rb"[A-Z]{3}"

# The batch path's dates: exactly the calendar's days, except February 29th (a leap year's question): a batch
# holding one declines, and its records go the per-record way, which asks `fromisoformat`.
_DATE = (
    rb"(?!0000)[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    rb"|(?:0[13578]|1[02])-31)"
)
_BATCH_TIME = _DATE + _CLOCK


def _fields(time: bytes) -> dict[str, bytes]:
    """Each field's JSON value (the model's fields in declaration order, as `to_json()` writes them); a group
    is a value the rows hold; `time` is a time's text between its quotes. The keys must be the model's fields
    in order, or the byte path is off (below)."""
    return {
        "event_id": b'"' + _UUID + b'"',
        "event_type": b'"ConversionAudited"',
        "schema_version": b"3",
        "occurred_at": b'"' + time + b'"',
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
        "converted_at": b'"' + time + b'"',
        "requested_by": b'(?:null|"(' + _UUID + b')")',
        "as_of": b'(?:null|"' + time + b'")',
    }


_FIELDS: Final = _fields(b"(" + _TIME + b")Z")


def _record(fields: dict[str, bytes]) -> bytes:
    return b"{" + b",".join(b'"' + name.encode() + b'":' + value for name, value in fields.items()) + b"}"


def _regex() -> re.Pattern[bytes] | None:
    # Only while the model is what this was written for, and the canonical decoder reads its layout (no
    # validator of its own, every field a plain type): otherwise every audit is decoded, which is correct.
    if tuple(ConversionAudited.model_fields) != tuple(_FIELDS) or layout_of(ConversionAudited) is None:
        return None
    return re.compile(_record(_FIELDS))


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


def _batch_regex() -> re.Pattern[bytes] | None:
    """One whole record per line, each time with its `Z` (see `audited_batch`)."""
    if _AUDITED is None:
        return None
    return re.compile(b"(?m)^" + _record(_fields(b"(" + _BATCH_TIME + b"Z)")) + b"\n")


_BATCH: Final = _batch_regex()
# A group's index in `_BATCH`'s match: occurred_at 0, audit_id 1, request_id 2, rate ids 3 and 4, rate_kind 5,
# currencies 6 and 7, amounts 8-11, converted_at 12, requested_by 13, as_of 14.
_AUDIT_COLUMNS: Final = itemgetter(*range(1, 15))
_REQUEST_COLUMNS: Final = itemgetter(0, 2)
_REQUEST_ID: Final = itemgetter(2)
# The columns of the batch's COPY texts, in the order of the record's fields. NULL is an empty field: no value
# the batch takes is empty. Times keep their `Z`, which PostgreSQL reads as the `+00:00` of `isoformat()`.
BATCH_REQUESTS = "COPY conversion_request (decided_at, request_id, outcome) FROM STDIN"
BATCH_AUDITS = (
    "COPY conversion_audit (id, request_id, rate_used_id, second_rate_id, rate_kind, base_currency, "
    "target_currency, input_amount, rate_value, margin, output_amount, converted_at, requested_by, as_of) "
    "FROM STDIN WITH (NULL '')"
)


# Audits per regex pass: a pass's match tuples (15 small bytes objects per audit) and its slice's joined bytes
# live only while that slice's texts are built, so what reading a batch holds beyond its records and texts does
# not grow with the batch (~1 MiB per 1,000 audits; docs/replay.md, "Peak memory").
BATCH_SLICE = 1000


def audited_batch(raws: list[bytes], slice_size: int = BATCH_SLICE) -> PreparedBatch | None:
    """The batch's `conversion_request` and `conversion_audit` COPY texts (`BATCH_REQUESTS`, `BATCH_AUDITS`),
    one line per record in order, each in pieces of whole lines (one per slice of `slice_size` records), the
    rows `audited_rows` gives record by record; or None (then each record goes `audited_rows`' way). A regex
    pass and a few joins in C per slice, where `audited_rows` runs Python per record.

    Declines unless every record is in the byte path's layout with no February 29th, and no request id comes
    twice in the batch (which decision stands is then the writer's per-record question). A slice that declines
    declines the batch at once; the slices before it have had their regex pass for nothing."""
    if _BATCH is None or not raws:
        return None
    keys: list[bytes] = []
    requests: list[bytes] = []
    audits: list[bytes] = []
    for start in range(0, len(raws), slice_size):
        texts = _slice(_BATCH, raws[start : start + slice_size], keys)
        if texts is None:
            return None
        requests.append(texts[0])
        audits.append(texts[1])
    if len(set(keys)) != len(keys):
        return None
    return PreparedBatch(raws, keys, (tuple(requests), tuple(audits)))


def _slice(pattern: re.Pattern[bytes], raws: list[bytes], keys: list[bytes]) -> tuple[bytes, bytes] | None:
    """A slice's two texts, its request ids appended to `keys`; or None (the batch declines)."""
    joined = b"\n".join(raws) + b"\n"
    if b"-02-29T" in joined:  # declined by the regex too; a search in C spares this slice's regex pass and the rest
        return None
    # One line per raw (no accepted record holds a raw newline), and a match per line: the pattern takes a
    # whole line from its start to its newline, so as many matches as lines is every line taken whole.
    if joined.count(b"\n") != len(raws):
        return None
    found = pattern.findall(joined)
    del joined
    if len(found) != len(raws):
        return None
    keys.extend(map(_REQUEST_ID, found))
    requests = b"\taudited\n".join(map(b"\t".join, map(_REQUEST_COLUMNS, found))) + b"\taudited\n"
    audits = b"\n".join(map(b"\t".join, map(_AUDIT_COLUMNS, found))) + b"\n"
    return requests, audits
