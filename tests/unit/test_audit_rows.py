"""Differential test of the replay's byte path for audits (ces/adapters/postgres/audit_rows.py): whenever it
takes a record, the decoder accepts the record and `bulk_audit` writes, for the decoded event, exactly the
same COPY lines (byte for byte) and the same dedupe key; whatever the decoder refuses, it declines. And it
takes every audit CES itself writes in the usual forms (else the replay would not get faster).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ces.adapters.postgres.audit_rows import audited_rows
from ces.adapters.postgres.bulk_audit import audited_lines
from ces.events.conversions import ConversionAudited
from ces.events.registry import UndecodableEvent, decode
from tests.strategies import audits_of

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

decimal_texts = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,25})?", fullmatch=True),
    st.from_regex(r"-?0\.0{4,9}[0-9]{0,3}", fullmatch=True),
    st.sampled_from(["0.0000010", "0.00000100", "-0.000000", "0.0000000"]),  # around where `str` turns to an exponent
    st.sampled_from(["0", "-0", "0.000000", "0.0000001", "0.0000000", "1.000", "181643", "1" * 64]),
)
instants = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)),
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=0)),
    st.sampled_from([datetime(2024, 2, 29, tzinfo=UTC), datetime(2026, 11, 30, 23, 59, 59, 1, tzinfo=UTC)]),
)
audits = audits_of(decimal_texts, instants)

# Texts a field's value may be replaced with in an otherwise canonical record: other spellings of the same
# value, values the decoder refuses, and values whose row text would differ from the event's text.
ODD_VALUES = [
    '"E0000000-0000-4000-8000-00000000000A"',
    '"{e0000000-0000-4000-8000-00000000000a}"',
    '"e00000000000400080000000000000aa"',
    '"e0000000-0000-4000-8000-00000000000"',
    '"not a uuid"',
    "null",
    "3",
    "4",
    '"3"',
    '"1E+2"',
    '"1e2"',
    '"01"',
    '" 1"',
    '"1."',
    '".5"',
    '"-0"',
    '"0.0000001"',
    '"0.00000012"',
    '"-0.000000"',
    "1.5",
    '"' + "9" * 65 + '"',
    '"2026-11-26T03:04:05Z"',
    '"2026-11-26T03:04:05.000000Z"',
    '"2026-11-26T03:04:05.000001Z"',
    '"2026-11-26T03:04:05+00:00"',
    '"2026-11-26T03:04:05.123Z"',
    '"2026-11-26 03:04:05Z"',
    '"2023-02-29T00:00:00Z"',
    '"2024-02-29T00:00:00Z"',
    '"2026-04-31T00:00:00Z"',
    '"2026-12-31T00:00:00Z"',
    '"2026-13-01T00:00:00Z"',
    '"2026-11-26T24:00:00Z"',
    '"2026-11-26T23:59:60Z"',
    '"0000-01-01T00:00:00Z"',
    '"9999-12-31T23:59:59.999999Z"',
    "[]",
    '["e0000000-0000-4000-8000-00000000000a"]',
    '["e0000000-0000-4000-8000-00000000000a","e0000000-0000-4000-8000-00000000000b"]',
    '["e0000000-0000-4000-8000-00000000000a","e0000000-0000-4000-8000-00000000000b",'
    '"e0000000-0000-4000-8000-00000000000c"]',
    '["E0000000-0000-4000-8000-00000000000A"]',
    '"direct"',
    '"Direct"',
    '"cross"',
    '"USD"',
    '"usd"',
    '"US\\u0044"',
    '"ConversionAudited"',
    '"ConversionRejected"',
]
FIELDS = list(ConversionAudited.model_fields)
# One field's value in `to_json()`'s layout: everything up to the next top-level comma.
VALUE = r'("{name}":)(\[[^\]]*\]|"[^"]*"|[^,}}]*)'


def lines(event: ConversionAudited) -> tuple[bytes, bytes]:
    request, audit = audited_lines(event)
    return request.encode(), audit.encode()


def assert_agrees(raw: bytes) -> bool:
    """The byte path takes `raw` only where the decoder accepts it, with `bulk_audit`'s lines; True when taken."""
    prepared = audited_rows(raw)
    try:
        event = decode(raw, expected=ConversionAudited)
    except UndecodableEvent:
        assert prepared is None, raw
        return False
    if prepared is None:
        return False
    assert isinstance(event, ConversionAudited)
    assert prepared.raw is raw and prepared.key == event.key()
    assert prepared.rows == lines(event), raw
    return True


def usual(event: ConversionAudited) -> bool:
    """In the forms the byte path promises to take (see its module doc)."""
    times = [event.occurred_at, event.converted_at] + ([event.as_of] if event.as_of else [])
    amounts = [event.input_amount, event.rate_value, event.margin, event.output_amount]
    return (
        len(event.rate_ids) <= 2
        and all(str(d) == format(d, "f") for d in amounts)
        and all(t.microsecond or not re.search(r"\.0{6}Z", event.to_json().decode()) for t in times)
    )


@SETTINGS
@given(audits)
@example(
    ConversionAudited(
        occurred_at=datetime(2026, 11, 26, 3, 4, 5, tzinfo=UTC),
        audit_id="a0000000-0000-4000-8000-000000000001",
        request_id="c0000000-0000-4000-8000-000000000001",
        rate_id="b0000000-0000-4000-8000-000000000001",
        rate_ids=["b0000000-0000-4000-8000-000000000001", "b0000000-0000-4000-8000-000000000002"],
        rate_kind="cross",
        base_currency="USD",
        target_currency="JPY",
        input_amount=Decimal("1234.56"),
        rate_value=Decimal("148.6137532133676"),
        margin=Decimal("0.01"),
        output_amount=Decimal("181643"),
        converted_at=datetime(2026, 11, 26, 3, 4, 5, 6, tzinfo=UTC),
        requested_by="d0000000-0000-4000-8000-000000000001",
        as_of=datetime(2001, 9, 11, 23, 59, 59, 999999, tzinfo=UTC),
    )
)
def test_an_audit_ces_writes_takes_the_byte_path_with_the_same_lines(event: ConversionAudited) -> None:
    raw = event.to_json()
    taken = assert_agrees(raw)
    if usual(event):
        assert taken, raw
    # `str(Decimal)` switching to an exponent is what makes the byte path decline some amounts.
    if any(str(d) != format(d, "f") for d in (event.input_amount, event.rate_value, event.margin)):
        assert not taken


@SETTINGS
@given(audits, st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(ODD_VALUES)), min_size=1, max_size=3))
def test_a_changed_value_takes_the_byte_path_only_where_the_decoder_agrees(
    event: ConversionAudited, changes: list[tuple[str, str]]
) -> None:
    text = event.to_json().decode()
    for name, value in changes:
        text = re.sub(VALUE.format(name=name), lambda m, v=value: m.group(1) + v, text, count=1)  # type: ignore[misc]
    assert_agrees(text.encode())


@SETTINGS
@given(audits, st.sampled_from(["reorder", "space", "extra", "missing", "escape", "bom", "latin1", "trailing"]))
def test_a_record_not_in_the_canonical_layout_is_declined_or_agrees(event: ConversionAudited, how: str) -> None:
    payload: dict[str, Any] = json.loads(event.to_json())
    if how == "reorder":
        raw = json.dumps(dict(reversed(payload.items())), separators=(",", ":")).encode()
    elif how == "space":
        raw = json.dumps(payload).encode()
    elif how == "extra":
        raw = json.dumps({**payload, "extra": 1}, separators=(",", ":")).encode()
    elif how == "missing":
        payload.pop("as_of")
        raw = json.dumps(payload, separators=(",", ":")).encode()
    elif how == "escape":
        raw = event.to_json().replace(b'"cross"', b'"cro\\u0073s"').replace(b'"direct"', b'"\\u0064irect"')
    elif how == "bom":
        raw = b"\xef\xbb\xbf" + event.to_json()
    elif how == "latin1":
        raw = event.to_json().replace(b'"USD"', b'"US\xc4"')
    else:
        raw = event.to_json() + b" "
    taken = assert_agrees(raw)
    assert not taken or (how in {"escape", "latin1"} and raw == event.to_json())
