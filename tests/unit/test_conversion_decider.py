"""Deciding conversions against a fake rate lookup: rate choice, provenance, freshness, margin, one lookup."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from ces.events.base import utc_now
from ces.events.conversions import ConversionAudited, ConversionRejected, Decision, audit_id_for, result_event_id
from ces.events.requests import ParsedRequest, parse_request
from ces.services.conversions import ConversionDecider
from tests.fakes import FakeRateLookup, stored_rate

NOW = utc_now()  # the decider reads the clock itself: rates are dated relative to the real one
FRESH = NOW - timedelta(minutes=5)
LEGS = {
    "USD": stored_rate("USD", "1.0892", FRESH),
    "JPY": stored_rate("JPY", "161.87", FRESH),
    "KWD": stored_rate("KWD", "0.33412", FRESH),
}
MINOR_UNITS = {"EUR": 2, "USD": 2, "JPY": 0, "KWD": 3, "GBP": 2}


def request(base: str, target: str, amount: str, request_id: uuid.UUID | None = None) -> ParsedRequest:
    payload = {"request_id": str(request_id or uuid.uuid4()), "base_currency": base, "target_currency": target}
    return parse_request(json.dumps({**payload, "amount": amount}).encode(), max_amount=Decimal(10**9))


def decider(lookup: FakeRateLookup, overrides: dict[str, Decimal] | None = None) -> ConversionDecider:
    return ConversionDecider(
        lookup,  # type: ignore[arg-type]  # RateLookup is a class, not a Protocol: the fake is structural
        default_margin=Decimal("0.0010"),
        margin_overrides={"EUR:JPY": Decimal("0.0050")} if overrides is None else overrides,
        max_rate_age=timedelta(hours=1),
    )


async def decide_one(lookup: FakeRateLookup, base: str, target: str, amount: str) -> Decision:
    (decision,) = await decider(lookup).decide([request(base, target, amount)])
    return decision


# The oracle: exact rational arithmetic and Fraction's own half-even rounding, no decimal contexts.
def significant(x: Fraction, digits: int = 16) -> Fraction:
    exponent = 0
    while x >= 10 ** (exponent + 1):
        exponent += 1
    while x < Fraction(10) ** exponent:
        exponent -= 1
    return round(x, digits - 1 - exponent)


def oracle_rate(base: str, target: str) -> Fraction:
    eur = {code: Fraction(leg.rate_value) for code, leg in LEGS.items()} | {"EUR": Fraction(1)}
    exact = eur[target] / eur[base]
    return exact if base == "EUR" else significant(exact)


def oracle_output(amount: str, rate: Fraction, margin: str, target: str) -> Fraction:
    return round(Fraction(amount) * rate * (1 - Fraction(margin)), MINOR_UNITS[target])


@pytest.mark.parametrize(
    ("base", "target", "amount", "kind", "legs"),
    [
        ("EUR", "USD", "100.00", "direct", ["USD"]),
        ("USD", "EUR", "100.00", "inverse", ["USD"]),
        ("USD", "JPY", "250.00", "cross", ["USD", "JPY"]),
        ("JPY", "USD", "1000", "cross", ["JPY", "USD"]),
        ("EUR", "KWD", "12.34", "direct", ["KWD"]),
        ("KWD", "JPY", "0.005", "cross", ["KWD", "JPY"]),
        ("EUR", "JPY", "999999.99", "direct", ["JPY"]),
    ],
)
async def test_an_audit_names_its_rates_and_matches_the_oracle(
    base: str, target: str, amount: str, kind: str, legs: list[str]
) -> None:
    rid = uuid.uuid4()
    (decision,) = await decider(FakeRateLookup(LEGS.values())).decide([request(base, target, amount, rid)])
    assert isinstance(decision, ConversionAudited)
    assert decision.rate_kind == kind
    assert decision.rate_ids == [LEGS[code].rate_id for code in legs]
    assert decision.rate_id == LEGS[legs[0]].rate_id
    assert (decision.base_currency, decision.target_currency, decision.input_amount) == (base, target, Decimal(amount))
    rate = oracle_rate(base, target)
    margin = "0.0050" if (base, target) == ("EUR", "JPY") else "0.0010"
    assert Fraction(decision.rate_value) == rate
    assert decision.margin == Decimal(margin)
    assert isinstance(decision.output_amount, Decimal)
    assert Fraction(decision.output_amount) == oracle_output(amount, rate, margin, target)
    assert decision.output_amount.as_tuple().exponent == -MINOR_UNITS[target]  # always the minor units
    # Ids derive from the request id: a re-decided request would be the same event, not a second one.
    assert decision.audit_id == audit_id_for(rid)
    assert decision.event_id == result_event_id("ConversionAudited", rid)
    assert decision.converted_at == decision.occurred_at


async def test_a_known_conversion_by_hand() -> None:
    decision = await decide_one(FakeRateLookup(LEGS.values()), "EUR", "USD", "100.00")
    assert isinstance(decision, ConversionAudited)
    assert decision.output_amount == Decimal("108.81")  # 100 * 1.0892 * 0.999 = 108.81108


async def test_a_margin_override_is_for_its_pair_in_its_direction_only() -> None:
    lookup = FakeRateLookup(LEGS.values())
    there, back = await decider(lookup).decide([request("EUR", "JPY", "100.00"), request("JPY", "EUR", "10000")])
    assert isinstance(there, ConversionAudited) and isinstance(back, ConversionAudited)
    assert (there.margin, back.margin) == (Decimal("0.0050"), Decimal("0.0010"))
    assert there.output_amount == Decimal(16106)  # 100 * 161.87 * 0.995 = 16106.065


@pytest.mark.parametrize(("amount", "output"), [("0.02", "0.02"), ("0.06", "0.08"), ("0.10", "0.12")])
async def test_an_exact_half_cent_rounds_to_even(amount: str, output: str) -> None:
    # 1.25 with no margin puts every amount ending in an even cent on an exact half of the minor unit.
    lookup = FakeRateLookup([stored_rate("GBP", "1.25", FRESH)])
    (decision,) = await decider(lookup, {"EUR:GBP": Decimal(0)}).decide([request("EUR", "GBP", amount)])
    assert isinstance(decision, ConversionAudited)
    assert decision.output_amount == Decimal(output)
    assert Fraction(output) == oracle_output(amount, Fraction("1.25"), "0", "GBP")


async def test_a_pair_without_a_rate_is_rejected_no_rate() -> None:
    decision = await decide_one(FakeRateLookup(LEGS.values()), "USD", "GBP", "1.00")
    assert isinstance(decision, ConversionRejected)
    assert decision.reason == "no_rate" and "USD->GBP" in decision.message


@pytest.mark.parametrize(
    ("stale_leg", "base", "target"), [("USD", "EUR", "USD"), ("USD", "USD", "JPY"), ("JPY", "USD", "JPY")]
)
async def test_a_rate_older_than_the_limit_is_rejected_stale(stale_leg: str, base: str, target: str) -> None:
    # A cross rate is as old as its oldest leg, whichever leg that is.
    legs = {**LEGS, stale_leg: stored_rate(stale_leg, "1.5", NOW - timedelta(hours=2))}
    decision = await decide_one(FakeRateLookup(legs.values()), base, target, "10.00")
    assert isinstance(decision, ConversionRejected)
    assert decision.reason == "stale_rate" and "older than the 3600s limit" in decision.message


@pytest.mark.parametrize("ahead", [timedelta(minutes=10), timedelta(days=3000)])
async def test_a_rate_dated_in_the_future_is_rejected_stale(ahead: timedelta) -> None:
    legs = {**LEGS, "USD": stored_rate("USD", "1.0892", utc_now() + ahead)}
    decision = await decide_one(FakeRateLookup(legs.values()), "EUR", "USD", "10.00")
    assert isinstance(decision, ConversionRejected)
    assert decision.reason == "stale_rate" and "from the future" in decision.message


async def test_a_rate_just_inside_the_limit_is_used() -> None:
    legs = {**LEGS, "USD": stored_rate("USD", "1.0892", utc_now() - timedelta(minutes=59))}
    assert isinstance(await decide_one(FakeRateLookup(legs.values()), "EUR", "USD", "10.00"), ConversionAudited)


async def test_one_lookup_per_batch_for_the_distinct_valid_pairs_and_decisions_in_request_order() -> None:
    lookup = FakeRateLookup(LEGS.values())
    batch = [
        request("EUR", "USD", "1.00"),
        request("USD", "JPY", "2.00"),
        request("EUR", "USD", "3.00"),
        request("EUR", "XXX", "4.00"),  # invalid: never looked up
        request("EUR", "GBP", "5.00"),
        request("EUR", "USD", "-1"),  # invalid amount: never looked up
    ]
    decisions = await decider(lookup).decide(batch)
    assert lookup.calls == [[("EUR", "GBP"), ("EUR", "USD"), ("USD", "JPY")]]
    assert [d.request_id for d in decisions] == [r.request_id for r in batch]
    outcomes = [d.reason if isinstance(d, ConversionRejected) else "audited" for d in decisions]
    assert outcomes == ["audited", "audited", "audited", "unknown_currency", "no_rate", "invalid_amount"]


async def test_a_request_that_failed_validation_keeps_its_rejection() -> None:
    rid = uuid.uuid4()
    (decision,) = await decider(FakeRateLookup(LEGS.values())).decide([request("EUR", "EUR", "1.00", rid)])
    assert isinstance(decision, ConversionRejected)
    assert decision.reason == "unsupported_pair"
    assert decision.event_id == result_event_id("ConversionRejected", rid)


def test_the_oracle_rounds_half_even() -> None:
    # The oracle's own rounding, pinned: a wrong oracle would agree with a wrong decider.
    assert round(Fraction("0.125"), 2) == Fraction("0.12") and round(Fraction("0.135"), 2) == Fraction("0.14")
    assert significant(Fraction(1, 3), 4) == Fraction("0.3333")
    assert significant(Fraction(200, 3), 4) == Fraction("66.67")


@pytest.mark.parametrize(
    ("base", "target", "extra"),
    [
        ("EUR", "USD", {}),
        ("USD", "EUR", {"requested_by": str(uuid.uuid4())}),
        ("USD", "JPY", {"as_of": "2020-01-31"}),
        ("KWD", "JPY", {"as_of": "2020-01-31T10:00:00+02:00", "requested_by": str(uuid.uuid4())}),
    ],
)
async def test_an_audit_built_without_validation_equals_the_validated_one(
    base: str, target: str, extra: dict[str, str]
) -> None:
    # `decide` builds audits with `model_construct`: the same event, field for field and byte for byte, as
    # validating its fields would give.
    raw = {"request_id": str(uuid.uuid4()), "base_currency": base, "target_currency": target, "amount": "1234.56"}
    parsed = parse_request(json.dumps(raw | extra).encode(), max_amount=Decimal(10**9))
    legs = list(LEGS.values())
    then = datetime(2020, 1, 31, 6, tzinfo=UTC)
    past = [stored_rate(leg.target_currency, str(leg.rate_value), then) for leg in legs]
    lookup = FakeRateLookup(past + legs)  # the latest rate of a pair is its last
    (built,) = await ConversionDecider(
        lookup,  # type: ignore[arg-type]
        default_margin=Decimal("0.0010"),
        margin_overrides={},
        max_rate_age=timedelta(days=1),
    ).decide([parsed])
    assert isinstance(built, ConversionAudited)
    validated = ConversionAudited.model_validate(dict(built))
    assert built == validated
    assert built.to_json() == validated.to_json()
    assert built.model_dump() == validated.model_dump()
