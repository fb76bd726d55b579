"""Conversions: validating a request and the one rounding rule, in pure `Decimal`.

    output = amount * rate * (1 - margin)

computed exactly (50 significant digits hold any product of our inputs), then rounded **once** to the
target currency's minor units (ISO 4217: JPY 0, USD 2, KWD 3) with ROUND_HALF_EVEN (banker's rounding: no
systematic upward bias over many conversions, the default of IEEE 754 decimal arithmetic and of Python's
`decimal`). `rate` is the rate before margin; a cross rate keeps >= 12 significant digits
(`ces.domain.rates`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum

from ces.domain.money import Currency, InvalidDecimal, UnknownCurrency, currency, parse_decimal
from ces.domain.rates import DerivedRate

# 50 digits hold every product exactly (amount <= 15 digits, rate <= 16, margin <= 10): one rounding only.
MONEY_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN)


class RejectionReason(StrEnum):
    INVALID_REQUEST = "invalid_request"
    INVALID_AMOUNT = "invalid_amount"
    UNKNOWN_CURRENCY = "unknown_currency"
    UNSUPPORTED_PAIR = "unsupported_pair"
    NO_RATE = "no_rate"
    STALE_RATE = "stale_rate"
    # The request names who asked (`requested_by`) without the gateway's valid signature (docs/security.md).
    UNAUTHENTICATED_REQUESTER = "unauthenticated_requester"
    INVALID_AS_OF = "invalid_as_of"
    AS_OF_IN_FUTURE = "as_of_in_future"


@dataclass(frozen=True)
class Rejection:
    reason: RejectionReason
    message: str


@dataclass(frozen=True)
class ValidRequest:
    base: Currency
    target: Currency
    amount: Decimal


def validate(
    base_code: object, target_code: object, amount_text: object, *, max_amount: Decimal
) -> ValidRequest | Rejection:
    codes = []
    for field, code in (("base_currency", base_code), ("target_currency", target_code)):
        if not isinstance(code, str):
            return Rejection(RejectionReason.INVALID_REQUEST, f'{field} must be a string such as "USD"')
        try:
            codes.append(currency(code))
        except UnknownCurrency:
            return Rejection(
                RejectionReason.UNKNOWN_CURRENCY, f"{field} {code[:16]!r} is not an ISO 4217 currency CES converts"
            )
    base, target = codes
    if base.code == target.code:
        return Rejection(RejectionReason.UNSUPPORTED_PAIR, f"{base.code} to {target.code} is not a conversion")
    amount = parse_amount(amount_text, base, max_amount=max_amount)
    if isinstance(amount, Rejection):
        return amount
    return ValidRequest(base, target, amount)


def parse_amount(text: object, base: Currency, *, max_amount: Decimal) -> Decimal | Rejection:
    if not isinstance(text, str):
        return Rejection(
            RejectionReason.INVALID_AMOUNT, 'amount must be a decimal string such as "100.00", not a JSON number'
        )
    try:
        amount = parse_decimal(text)
    except InvalidDecimal as exc:
        return Rejection(RejectionReason.INVALID_AMOUNT, f"amount: {exc}")
    if amount <= 0:
        return Rejection(RejectionReason.INVALID_AMOUNT, "amount must be positive")
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # parse_decimal admits finite values only
    if -exponent > base.minor_units:
        return Rejection(
            RejectionReason.INVALID_AMOUNT,
            f"amount has more decimals than {base.code} allows ({base.minor_units})",
        )
    if amount > max_amount:
        return Rejection(RejectionReason.INVALID_AMOUNT, f"amount exceeds the maximum of {max_amount}")
    return amount


def check_fresh(rate: DerivedRate, now: datetime, max_age: timedelta) -> Rejection | None:
    """A rate is usable when `0 <= now - published_at <= max_age`.

    A rate dated after `now` (negative age) is refused too, with the same `stale_rate` reason (the
    reasons are a stable contract) and its own message: it comes from a clock ahead of ours or from a
    bogus timestamp, and nothing says its value was ever in force. The projection already refuses rates
    published beyond their fetch time plus the allowed clock skew (docs/rates.md).
    """
    age = now - rate.published_at
    if age < timedelta(0):
        return Rejection(
            RejectionReason.STALE_RATE,
            f"the newest {rate.base_currency}->{rate.target_currency} rate is dated "
            f"{rate.published_at.isoformat()}, after the conversion time {now.isoformat()}: "
            "a rate from the future is not used",
        )
    if age > max_age:
        return Rejection(
            RejectionReason.STALE_RATE,
            f"the newest {rate.base_currency}->{rate.target_currency} rate was published "
            f"{rate.published_at.isoformat()}, older than the {int(max_age.total_seconds())}s limit",
        )
    return None


def convert(amount: Decimal, rate: Decimal, margin: Decimal, target: Currency) -> Decimal:
    gross = MONEY_CONTEXT.multiply(amount, rate)
    net = MONEY_CONTEXT.multiply(gross, MONEY_CONTEXT.subtract(Decimal(1), margin))
    return net.quantize(target.quantum, rounding=ROUND_HALF_EVEN, context=MONEY_CONTEXT)
