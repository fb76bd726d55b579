"""Exchange rates and the rule for serving any pair from rates published against one base currency.

A provider publishes BASE->X for every X (ECB: EUR). CES stores exactly those rows and derives the rest
at lookup time:

- direct   BASE->X:  the stored row;
- inverse  X->BASE:  1 / (BASE->X);
- cross    X->Y:     (BASE->Y) / (BASE->X).

Derived values are computed with 28 significant digits (`RATE_CONTEXT`) and rounded to
`DERIVED_SIGNIFICANT_DIGITS` (16) significant digits, ROUND_HALF_EVEN, so any derived rate keeps at least
12 significant digits before a conversion's final rounding. Every derived rate names the immutable rows
(`legs`) it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum
from uuid import UUID

RATE_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)
DERIVED_SIGNIFICANT_DIGITS = 16


class RateKind(StrEnum):
    DIRECT = "direct"
    INVERSE = "inverse"
    CROSS = "cross"


@dataclass(frozen=True)
class Rate:
    """One immutable published rate (one `exchange_rate` row)."""

    rate_id: UUID
    base_currency: str
    target_currency: str
    rate_value: Decimal
    provider_name: str
    published_at: datetime
    fetched_at: datetime

    @property
    def pair(self) -> str:
        return f"{self.base_currency}:{self.target_currency}"


# Default of `CES_MAX_CLOCK_SKEW_SECONDS`: how far a publication may lie ahead of the clock that fetched it.
DEFAULT_MAX_CLOCK_SKEW = timedelta(seconds=300)


def implausible_publication(
    published_at: datetime, fetched_at: datetime, max_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW
) -> str | None:
    """Why a rate's publication time cannot be true, or None.

    A rate cannot have been published after it was fetched; `max_skew` forgives the provider's clock
    running ahead of ours. Without this rule a rate dated in year 9999 would be "the newest" forever:
    the cache never moves backwards and every lookup orders by `published_at`.
    """
    if published_at > fetched_at + max_skew:
        return (
            f"published_at {published_at.isoformat()} is later than fetched_at {fetched_at.isoformat()} "
            f"plus the {int(max_skew.total_seconds())}s clock skew allowed"
        )
    return None


@dataclass(frozen=True)
class DerivedRate:
    """A rate for any pair, with the rows it was computed from."""

    base_currency: str
    target_currency: str
    rate_value: Decimal
    kind: RateKind
    legs: tuple[Rate, ...]

    @property
    def published_at(self) -> datetime:
        """The oldest leg's date: a derived rate is only as fresh as its stalest input."""
        return min(leg.published_at for leg in self.legs)

    @property
    def fetched_at(self) -> datetime:
        return min(leg.fetched_at for leg in self.legs)

    @property
    def rate_ids(self) -> tuple[UUID, ...]:
        return tuple(leg.rate_id for leg in self.legs)


def round_significant(value: Decimal, digits: int = DERIVED_SIGNIFICANT_DIGITS) -> Decimal:
    if value.is_zero():
        return value
    exponent = value.adjusted() - digits + 1
    return value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_EVEN, context=RATE_CONTEXT)


def inverse(leg: Rate) -> DerivedRate:
    value = round_significant(RATE_CONTEXT.divide(Decimal(1), leg.rate_value))
    return DerivedRate(leg.target_currency, leg.base_currency, value, RateKind.INVERSE, (leg,))


def cross(from_leg: Rate, to_leg: Rate) -> DerivedRate:
    """X->Y from BASE->X (`from_leg`) and BASE->Y (`to_leg`)."""
    if from_leg.base_currency != to_leg.base_currency:
        raise ValueError("cross legs must share their base currency")
    value = round_significant(RATE_CONTEXT.divide(to_leg.rate_value, from_leg.rate_value))
    return DerivedRate(from_leg.target_currency, to_leg.target_currency, value, RateKind.CROSS, (from_leg, to_leg))


def direct(leg: Rate) -> DerivedRate:
    return DerivedRate(leg.base_currency, leg.target_currency, leg.rate_value, RateKind.DIRECT, (leg,))


def legs_needed(base: str, target: str, pivot: str) -> list[tuple[str, str]]:
    """Which stored pairs (pivot->X) serve `base->target`, in the order `derive` expects them."""
    if base == target:
        return []
    if base == pivot:
        return [(pivot, target)]
    if target == pivot:
        return [(pivot, base)]
    return [(pivot, base), (pivot, target)]


def derive(base: str, target: str, pivot: str, legs: list[Rate]) -> DerivedRate:
    """Combine the rows named by `legs_needed(base, target, pivot)` into the rate for base->target."""
    if base == pivot:
        return direct(legs[0])
    if target == pivot:
        return inverse(legs[0])
    return cross(legs[0], legs[1])


@dataclass(frozen=True)
class Withdrawal:
    """A revoked rate, and what its pair falls back to (None: no row of the pair is left)."""

    revoked: Rate
    replacement: Rate | None
