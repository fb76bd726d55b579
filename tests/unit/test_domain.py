"""The pure core: currencies, exact decimals, and derived (inverse and cross) rates with provenance."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ces.domain.money import InvalidDecimal, UnknownCurrency, currency, parse_decimal
from ces.domain.rates import Rate, RateKind, derive, legs_needed, round_significant

T = datetime(2024, 3, 15, 15, tzinfo=UTC)


def leg(target: str, value: str) -> Rate:
    return Rate(uuid.uuid4(), "EUR", target, Decimal(value), "ecb", T, T)


def test_minor_units_come_from_iso_4217() -> None:
    assert (currency("JPY").minor_units, currency("USD").minor_units, currency("KWD").minor_units) == (0, 2, 3)
    assert currency("USD").quantum == Decimal("0.01")
    for code in ("usd", "XAU", "ABC", "US"):
        with pytest.raises(UnknownCurrency):
            currency(code)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e5", "1,5", " 1", "0x10", "", "1.2.3"])
def test_only_plain_decimal_text_is_accepted(text: str) -> None:
    with pytest.raises(InvalidDecimal):
        parse_decimal(text)


def test_plain_decimal_text_keeps_its_digits() -> None:
    assert str(parse_decimal("100.10")) == "100.10"
    assert parse_decimal("0.000000123456789012") == Decimal("1.23456789012E-7")


def test_pairs_are_served_direct_inverse_and_cross_with_their_legs() -> None:
    usd, ngn = leg("USD", "1.0892"), leg("NGN", "1745.1234")
    assert legs_needed("EUR", "USD", "EUR") == [("EUR", "USD")]
    assert legs_needed("NGN", "EUR", "EUR") == [("EUR", "NGN")]
    assert legs_needed("USD", "NGN", "EUR") == [("EUR", "USD"), ("EUR", "NGN")]

    direct = derive("EUR", "USD", "EUR", [usd])
    assert direct.kind is RateKind.DIRECT and direct.rate_value == Decimal("1.0892")

    inverse = derive("NGN", "EUR", "EUR", [ngn])
    assert inverse.kind is RateKind.INVERSE and inverse.rate_ids == (ngn.rate_id,)
    assert inverse.rate_value == Decimal("0.0005730253803255403")  # bc: 1/1745.1234

    cross = derive("USD", "NGN", "EUR", [usd, ngn])
    assert cross.kind is RateKind.CROSS and cross.rate_ids == (usd.rate_id, ngn.rate_id)
    assert cross.rate_value == Decimal("1602.206573632024")  # bc: 1745.1234/1.0892


rates = st.decimals(min_value=Decimal("1E-8"), max_value=Decimal("1E8"), places=8, allow_nan=False).filter(
    lambda d: d > 0
)


@given(a=rates, b=rates)
def test_derived_rates_keep_at_least_12_significant_digits(a: Decimal, b: Decimal) -> None:
    cross = derive("AAA", "BBB", "EUR", [leg("AAA", str(a)), leg("BBB", str(b))]).rate_value
    inverse = derive("AAA", "EUR", "EUR", [leg("AAA", str(a))]).rate_value
    for value, exact in ((cross, b / a), (inverse, 1 / a)):
        assert len(value.as_tuple().digits) >= 12 or value == exact
        # Relative error bounded by the 16-digit rounding.
        assert abs(value - exact) <= abs(exact) * Decimal("1E-15")


@given(st.decimals(min_value=Decimal("1E-20"), max_value=Decimal("1E20"), allow_nan=False, allow_infinity=False))
def test_round_significant_never_keeps_more_than_16_digits(value: Decimal) -> None:
    if value > 0:
        assert len(round_significant(value).normalize().as_tuple().digits) <= 16
