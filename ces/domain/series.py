"""Time series and fluctuation of rates: one value per day per symbol, derived through the pivot, and its change.

A day's rows are every stored `pivot -> X` row published that (UTC) day. For each symbol the day's value is
derived (`ces.domain.rates.derive`) from the newest publication of that day (same instant, same provider)
that holds every leg the pair needs, so a cross never mixes two publications, and every value names the
rows it came from. A symbol whose legs were not published that day has no value that day.

Fluctuation compares a symbol's first and last value inside the range:

- `change`     = end_rate - start_rate, with `RATE_CONTEXT` (28 significant digits: exact for two rates of
  one pair, which carry at most 16);
- `change_pct` = change / start_rate * 100, computed with `RATE_CONTEXT` (28 digits) and rounded
  ROUND_HALF_EVEN to `CHANGE_PCT_PLACES` (4) decimal places.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from ces.domain.rates import RATE_CONTEXT, DerivedRate, Rate, derive, legs_needed

CHANGE_PCT_PLACES = 4
_PCT_QUANTUM = Decimal(1).scaleb(-CHANGE_PCT_PLACES)


def stored_targets(base: str, symbols: Iterable[str], pivot: str) -> set[str]:
    """The `pivot -> X` targets whose rows serve `base -> s` for every symbol `s`."""
    return {target for symbol in symbols for _, target in legs_needed(base, symbol, pivot)}


def day_values(base: str, symbols: Sequence[str], pivot: str, rows: Iterable[Rate]) -> dict[str, DerivedRate]:
    """Each symbol's rate on one day, from that day's stored `pivot -> X` rows (any order)."""
    publications: dict[tuple[datetime, str], dict[str, Rate]] = {}
    for row in rows:
        publications.setdefault((row.published_at, row.provider_name), {})[row.target_currency] = row
    # Usually one publication a day: then there is nothing to choose between.
    newest_first = [legs for _, legs in sorted(publications.items(), key=lambda item: item[0][0], reverse=True)]
    values: dict[str, DerivedRate] = {}
    for symbol in symbols:
        needed = legs_needed(base, symbol, pivot)
        for legs in newest_first:
            found = [legs[target] for _, target in needed if target in legs]
            if found and len(found) == len(needed):
                values[symbol] = derive(base, symbol, pivot, found)
                break
    return values


@dataclass(frozen=True)
class Fluctuation:
    """A symbol's change between its first and last rate inside a range."""

    start_day: date
    start: DerivedRate
    end_day: date
    end: DerivedRate

    @property
    def change(self) -> Decimal:
        return RATE_CONTEXT.subtract(self.end.rate_value, self.start.rate_value)

    @property
    def change_pct(self) -> Decimal:
        ratio = RATE_CONTEXT.divide(self.change, self.start.rate_value)
        return RATE_CONTEXT.multiply(ratio, Decimal(100)).quantize(_PCT_QUANTUM, rounding=ROUND_HALF_EVEN)
