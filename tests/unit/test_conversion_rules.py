"""Conversion rules in isolation: validation reasons, request parsing, and the one rounding."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ces.domain.conversion import Rejection, RejectionReason, ValidRequest, check_fresh, convert, validate
from ces.domain.money import currency
from ces.domain.rates import Rate, direct
from ces.events.registry import UndecodableEvent
from ces.events.requests import parse_request
from ces.services.conversions import rejected

MAX = Decimal("1000000000000")


@pytest.mark.parametrize(
    ("base", "target", "amount", "reason"),
    [
        ("USD", "EUR", "0", RejectionReason.INVALID_AMOUNT),
        ("USD", "EUR", "-1.00", RejectionReason.INVALID_AMOUNT),
        ("USD", "EUR", "1.001", RejectionReason.INVALID_AMOUNT),  # USD has 2 decimals
        ("JPY", "EUR", "1.5", RejectionReason.INVALID_AMOUNT),  # JPY has none
        ("KWD", "EUR", "1.0001", RejectionReason.INVALID_AMOUNT),  # KWD has 3
        ("USD", "EUR", "1e3", RejectionReason.INVALID_AMOUNT),
        ("USD", "EUR", "NaN", RejectionReason.INVALID_AMOUNT),
        ("USD", "EUR", 12.5, RejectionReason.INVALID_AMOUNT),
        ("USD", "EUR", "1000000000000.01", RejectionReason.INVALID_AMOUNT),
        ("USD", "EUR", None, RejectionReason.INVALID_AMOUNT),
        ("USD", "usd", "1.00", RejectionReason.UNKNOWN_CURRENCY),
        ("XAU", "USD", "1.00", RejectionReason.UNKNOWN_CURRENCY),
        ("USD", "USD", "1.00", RejectionReason.UNSUPPORTED_PAIR),
        (None, "USD", "1.00", RejectionReason.INVALID_REQUEST),
    ],
)
def test_invalid_requests_are_rejections_not_exceptions(
    base: object, target: object, amount: object, reason: RejectionReason
) -> None:
    outcome = validate(base, target, amount, max_amount=MAX)
    assert isinstance(outcome, Rejection) and outcome.reason is reason and outcome.message


def test_valid_amounts_keep_their_digits() -> None:
    outcome = validate("KWD", "JPY", "12.345", max_amount=MAX)
    assert isinstance(outcome, ValidRequest) and str(outcome.amount) == "12.345"
    assert isinstance(validate("JPY", "USD", "1000", max_amount=MAX), ValidRequest)


def test_rounding_is_half_even_to_the_target_minor_units() -> None:
    usd, jpy, kwd = currency("USD"), currency("JPY"), currency("KWD")
    # 0.125 and 0.135 are ties: half-even goes to the even neighbour.
    assert convert(Decimal("1"), Decimal("0.125"), Decimal(0), usd) == Decimal("0.12")
    assert convert(Decimal("1"), Decimal("0.135"), Decimal(0), usd) == Decimal("0.14")
    assert convert(Decimal("100.00"), Decimal("161.87"), Decimal("0.01"), jpy) == Decimal("16025")
    assert convert(Decimal("100.00"), Decimal("0.33421"), Decimal("0.01"), kwd) == Decimal("33.087")


@given(
    amount=st.integers(1, 10**14).map(lambda n: Decimal(n).scaleb(-2)),
    rate=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=10),
    margin=st.decimals(min_value=Decimal(0), max_value=Decimal("0.2"), places=4),
)
def test_conversion_equals_exact_arithmetic_rounded_once(amount: Decimal, rate: Decimal, margin: Decimal) -> None:
    # Oracle: exact integer arithmetic (values scaled by powers of ten), then one half-even rounding.
    numerator = int(amount.scaleb(2)) * int(rate.scaleb(10)) * int((1 - margin).scaleb(4))
    hundredths, remainder = divmod(numerator, 10 ** (10 + 4))
    half = 10 ** (10 + 4) // 2
    if remainder > half or (remainder == half and hundredths % 2 == 1):
        hundredths += 1
    expected = Decimal(hundredths).scaleb(-2)
    assert convert(amount, rate, margin, currency("USD")) == expected


def test_a_rate_older_than_the_limit_is_stale() -> None:
    now = datetime(2024, 4, 2, 15, tzinfo=UTC)
    leg = Rate(uuid.uuid4(), "EUR", "USD", Decimal("1.08"), "ecb", now - timedelta(days=5), now)
    assert check_fresh(direct(leg), now, timedelta(days=6)) is None  # an Easter weekend is fine
    stale = check_fresh(direct(leg), now, timedelta(days=4))
    assert stale is not None and stale.reason is RejectionReason.STALE_RATE


def raw(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_minimal_request_reads_the_same_every_time() -> None:
    rid = str(uuid.uuid4())
    message = raw(request_id=rid, base_currency="USD", target_currency="NGN", amount="100.00")
    first = parse_request(message, max_amount=MAX)
    again = parse_request(message, max_amount=MAX)
    assert first == again and first.valid is not None and str(first.request_id) == rid


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"{", "invalid_json"),
        (b'"text"', "not_an_object"),
        (raw(base_currency="USD"), "invalid_request_id"),
        (raw(request_id="not-a-uuid"), "invalid_request_id"),
        (raw(request_id=str(uuid.uuid4()), event_type="RateFetched"), "unexpected_event_type"),
        (b"x" * 20_000, "oversized"),
        (b'{"request_id": ' + b"9" * 5000 + b"}", "invalid_json"),  # int too long to convert
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),  # deeper than the recursion limit
        (b'{"request_id": "\\ud800"}', "invalid_request_id"),
        (b"\xff\xfe", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"request_id": "x", "request_id": "6f1d3a52-3c55-4a8e-9a7e-5b1c2f0e8d41"}', "invalid_json"),
        (b'{"request_id": "6f1d3a52-3c55-4a8e-9a7e-5b1c2f0e8d41", "amount": "1", "amount": "1000"}', "invalid_json"),
    ],
)
def test_messages_without_a_usable_request_id_are_dead_letters(message: bytes, reason: str) -> None:
    with pytest.raises(UndecodableEvent) as info:
        parse_request(message, max_amount=MAX)
    assert info.value.reason == reason


def test_oversized_request_with_an_id_is_rejected_not_dead_lettered() -> None:
    rid = str(uuid.uuid4())
    message = raw(request_id=rid, base_currency="USD", target_currency="EUR", amount="1.00", pad="x" * 20_000)
    parsed = parse_request(message, max_amount=MAX)
    assert parsed.rejection is not None and parsed.rejection.reason is RejectionReason.INVALID_REQUEST


def test_unknown_fields_are_rejected() -> None:
    message = raw(request_id=str(uuid.uuid4()), base_currency="USD", target_currency="EUR", amount="1", amout="2")
    parsed = parse_request(message, max_amount=MAX)
    assert parsed.rejection is not None and "amout" in parsed.rejection.message


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_anything_but_a_dead_letter(data: bytes) -> None:
    try:
        parsed = parse_request(data, max_amount=MAX)
    except UndecodableEvent as exc:
        assert exc.reason in {"invalid_json", "not_an_object", "invalid_request_id", "unexpected_event_type"}
    else:
        assert (parsed.valid is None) != (parsed.rejection is None)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"amount": "１２"}, RejectionReason.INVALID_AMOUNT),  # fullwidth digits, which Decimal() reads as 12
        ({"amount": "١٢"}, RejectionReason.INVALID_AMOUNT),  # Arabic-Indic digits
        ({"amount": "12\n"}, RejectionReason.INVALID_AMOUNT),
        ({"amount": "\ud800"}, RejectionReason.INVALID_AMOUNT),
        ({"amount": "1\x00"}, RejectionReason.INVALID_AMOUNT),
        ({"base_currency": "US\x00"}, RejectionReason.UNKNOWN_CURRENCY),
        ({"base_currency": "\ud800"}, RejectionReason.UNKNOWN_CURRENCY),
        ({"na\x00me": "x"}, RejectionReason.INVALID_REQUEST),
        ({"\ud800": "\udfff"}, RejectionReason.INVALID_REQUEST),
    ],
)
def test_nasty_values_are_rejections_whose_message_every_backend_accepts(
    fields: dict[str, str], reason: RejectionReason
) -> None:
    request = {"request_id": str(uuid.uuid4()), "base_currency": "USD", "target_currency": "EUR", "amount": "1"}
    parsed = parse_request(json.dumps({**request, **fields}).encode(), max_amount=MAX)
    assert parsed.rejection is not None and parsed.rejection.reason is reason
    event = rejected(parsed.request_id, parsed.rejection, datetime.now(UTC))
    assert "\x00" not in event.message
    event.message.encode("utf-8")  # no lone surrogate: PostgreSQL and Kafka take it
    assert json.loads(event.to_json())["reason"] == reason.value
