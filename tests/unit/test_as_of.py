"""`as_of`: reading it (date, instant, malformed, future), carrying it through the request reader, the events
(v3, upcast from v2) and the decider (the rate in force then, staleness counted back from it), and the
quote endpoint that prices the same way and records nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ces.domain.as_of import AsOfError, parse_as_of
from ces.events.base import utc_now
from ces.events.conversions import ConversionAudited, ConversionRejected
from ces.events.registry import decode
from ces.events.requests import parse_request
from ces.services.conversions import ConversionDecider
from ces.settings import Settings
from tests.fakes import FakeRateLookup, FakeRequester, audited, stored_rate
from tests.gateway_clients import Client, Gateways

SKEW = timedelta(seconds=300)
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
# Two publications of each leg: 2008-09-12 (Friday) and 2008-09-15 (Monday), 14:00 UTC; and one today.
FRI, MON = datetime(2008, 9, 12, 14, tzinfo=UTC), datetime(2008, 9, 15, 14, tzinfo=UTC)
LEGS = [
    stored_rate("USD", "1.4158", FRI),
    stored_rate("USD", "1.4222", MON),
    stored_rate("JPY", "150.73", FRI),
    stored_rate("JPY", "149.75", MON),
    stored_rate("USD", "1.1000", utc_now() - timedelta(minutes=5)),
    stored_rate("JPY", "170.00", utc_now() - timedelta(minutes=5)),
]


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2008-09-15", datetime(2008, 9, 15, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2008-09-15T16:00:00+02:00", datetime(2008, 9, 15, 14, tzinfo=UTC)),
        ("2008-09-15t14:00:00.25z", datetime(2008, 9, 15, 14, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-25", datetime(2026, 11, 25, 23, 59, 59, 999999, tzinfo=UTC)),  # today: allowed
        ("2026-11-25T12:04:59Z", datetime(2026, 11, 25, 12, 4, 59, tzinfo=UTC)),  # within the clock skew
    ],
)
def test_a_date_is_the_end_of_that_day_utc_and_an_instant_keeps_its_offset(text: str, instant: datetime) -> None:
    assert parse_as_of(text, NOW, SKEW) == instant


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-11-26", "as_of_in_future"),
        ("2026-11-25T12:05:01Z", "as_of_in_future"),
        ("2008-02-30", "invalid_as_of"),
        ("2008-09-15T14:00:00", "invalid_as_of"),  # no offset: which instant is meant?
        ("15/09/2008", "invalid_as_of"),
        ("2008-09-15T24:00:00Z", "invalid_as_of"),
        ("2008-09-15T14:00:00.1234567Z", "invalid_as_of"),  # finer than PostgreSQL keeps
        (20080915, "invalid_as_of"),
        ("２００８-09-15", "invalid_as_of"),
    ],
)
def test_a_malformed_or_future_as_of_is_refused_with_a_stable_reason(value: object, reason: str) -> None:
    with pytest.raises(AsOfError) as caught:
        parse_as_of(value, NOW, SKEW)
    assert caught.value.reason == reason and caught.value.message


def raw(**fields: Any) -> bytes:
    body = {"request_id": str(uuid.uuid4()), "base_currency": "USD", "target_currency": "JPY", "amount": "100.00"}
    return json.dumps({**body, **fields}).encode()


def test_the_reader_turns_a_bad_as_of_into_a_rejection_never_a_dead_letter() -> None:
    parsed = parse_request(raw(as_of="yesterday"), max_amount=Decimal(10**9))
    assert parsed.rejection is not None and parsed.rejection.reason == "invalid_as_of" and parsed.as_of is None
    future = parse_request(raw(as_of="2999-01-01", requested_by=str(uuid.uuid4())), max_amount=Decimal(10**9))
    assert future.rejection is not None and future.rejection.reason == "as_of_in_future"
    assert future.as_of == datetime(2999, 1, 1, 23, 59, 59, 999999, tzinfo=UTC) and future.requested_by
    fine = parse_request(raw(as_of="2008-09-15", schema_version=3), max_amount=Decimal(10**9))
    assert fine.valid is not None and fine.as_of == datetime(2008, 9, 15, 23, 59, 59, 999999, tzinfo=UTC)


def test_a_v2_decision_upcasts_to_v3_without_as_of() -> None:
    rid = uuid.uuid4()
    v2 = {
        "event_id": str(uuid.uuid4()),
        "event_type": "ConversionRejected",
        "schema_version": 2,
        "occurred_at": "2026-01-01T00:00:00Z",
        "request_id": str(rid),
        "reason": "no_rate",
        "message": "no rate",
        "rejected_at": "2026-01-01T00:00:00Z",
        "requested_by": None,
    }
    event = decode(json.dumps(v2).encode())
    assert isinstance(event, ConversionRejected) and event.schema_version == 3 and event.as_of is None


def decider(max_age: timedelta = timedelta(days=6)) -> tuple[ConversionDecider, FakeRateLookup]:
    lookup = FakeRateLookup(LEGS)
    return (
        ConversionDecider(
            lookup,  # type: ignore[arg-type]  # RateLookup is a class; the fake is structural
            default_margin=Decimal("0.01"),
            margin_overrides={},
            max_rate_age=max_age,
        ),
        lookup,
    )


async def test_as_of_uses_each_legs_newest_row_at_or_before_it_and_says_so() -> None:
    d, lookup = decider()
    saturday = parse_request(raw(as_of="2008-09-13"), max_amount=Decimal(10**9))
    monday_morning = parse_request(raw(as_of="2008-09-15T10:00:00+02:00"), max_amount=Decimal(10**9))
    monday = parse_request(raw(as_of="2008-09-15"), max_amount=Decimal(10**9))
    now = parse_request(raw(), max_amount=Decimal(10**9))
    decisions = await d.decide([saturday, monday_morning, monday, now])
    assert all(isinstance(x, ConversionAudited) for x in decisions)
    sat, morning, mon, current = (x for x in decisions if isinstance(x, ConversionAudited))
    assert [x.rate_ids for x in (sat, morning)] == [[LEGS[0].rate_id, LEGS[2].rate_id]] * 2  # Friday's rows
    assert mon.rate_ids == [LEGS[1].rate_id, LEGS[3].rate_id]
    assert sat.rate_value == Decimal("106.4627772284221") and sat.output_amount == Decimal("10540")
    assert mon.as_of == datetime(2008, 9, 15, 23, 59, 59, 999999, tzinfo=UTC) and current.as_of is None
    assert current.rate_ids == [LEGS[4].rate_id, LEGS[5].rate_id]
    # The current rates come from the usual lookup; the past ones from one call for the whole batch.
    assert lookup.calls == [[("USD", "JPY")]] and len(lookup.calls_at) == 1


async def test_staleness_is_counted_back_from_as_of() -> None:
    d, _ = decider(max_age=timedelta(days=2))
    sunday = parse_request(raw(as_of="2008-09-14T14:00:01Z"), max_amount=Decimal(10**9))
    too_early = parse_request(raw(as_of="2008-09-12T13:59:59Z"), max_amount=Decimal(10**9))
    stale, missing = await d.decide([sunday, too_early])
    assert isinstance(stale, ConversionRejected) and stale.reason == "stale_rate" and "as_of" in stale.message
    assert isinstance(missing, ConversionRejected) and missing.reason == "no_rate"
    assert missing.as_of == datetime(2008, 9, 12, 13, 59, 59, tzinfo=UTC)


async def test_without_as_of_nothing_reads_the_past() -> None:
    d, lookup = decider()
    (decision,) = await d.decide([parse_request(raw(), max_amount=Decimal(10**9))])
    assert isinstance(decision, ConversionAudited) and decision.as_of is None and lookup.calls_at == []


@pytest.fixture
async def client(gateways: Gateways) -> tuple[Client, FakeRequester]:
    requester = FakeRequester(audited)
    http = await gateways.start(Settings(gateway_max_body_bytes=16 * 1024), requester=requester, quotes=decider()[0])
    return http, requester


async def test_a_quote_names_its_rows_and_is_not_a_conversion_of_record(client: Any) -> None:
    http, requester = client
    response = await http.get(
        "/v1/quote", params={"base": "usd", "target": "JPY", "amount": "100", "as_of": "2008-09-13"}
    )
    body = await response.json()
    assert response.status == 200 and body["conversion_of_record"] is False
    assert (body["output_amount"], body["rate_kind"]) == ("10540", "cross")
    assert body["rate_ids"] == [str(LEGS[0].rate_id), str(LEGS[2].rate_id)] and len(body["legs"]) == 2
    assert body["as_of"] == "2008-09-13T23:59:59.999999Z" and requester.calls == []
    now = await (await http.get("/v1/quote", params={"base": "EUR", "target": "USD", "amount": "10"})).json()
    assert (now["output_amount"], now["rate_ids"], "as_of" in now) == ("10.89", [str(LEGS[4].rate_id)], False)


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"base": "USD", "target": "JPY"}, 422, "invalid_request"),
        ({"base": "USD", "target": "XXX", "amount": "1"}, 422, "unknown_currency"),
        ({"base": "USD", "target": "JPY", "amount": "1.001"}, 422, "invalid_amount"),
        ({"base": "USD", "target": "JPY", "amount": "1", "as_of": "last week"}, 422, "invalid_as_of"),
        ({"base": "USD", "target": "JPY", "amount": "1", "as_of": "2999-01-01"}, 422, "as_of_in_future"),
        ({"base": "USD", "target": "JPY", "amount": "1", "as_of": "2008-09-11"}, 404, "no_rate"),
        ({"base": "USD", "target": "JPY", "amount": "1", "as_of": "2009-01-01"}, 409, "stale_rate"),
    ],
)
async def test_a_quote_that_cannot_be_given_is_a_problem(
    client: Any, params: dict[str, str], status: int, code: str
) -> None:
    http, _ = client
    response = await http.get("/v1/quote", params=params)
    assert response.status == status and response.content_type == "application/problem+json"
    assert (await response.json())["code"] == code


async def test_post_conversions_takes_as_of_and_refuses_a_bad_one_with_422(client: Any) -> None:
    http, requester = client
    body = {"base_currency": "USD", "target_currency": "JPY", "amount": "1.00", "request_id": str(uuid.uuid4())}
    bad = await http.post("/v1/conversions", json={**body, "as_of": "2008-09-15T14:00"})
    assert bad.status == 422 and (await bad.json())["code"] == "invalid_as_of" and requester.calls == []
    future = await http.post("/v1/conversions", json={**body, "as_of": "2999-01-01"})
    assert future.status == 422 and (await future.json())["code"] == "as_of_in_future"
    ok = await http.post("/v1/conversions", json={**body, "as_of": "2008-09-15"})
    assert ok.status == 201 and requester.as_of == "2008-09-15"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        # Which of two values would be priced is a guess; a misspelt as_of would quote today's rates.
        ([("base", "USD"), ("base", "EUR"), ("target", "JPY"), ("amount", "1")], "invalid_request"),
        (
            [("base", "USD"), ("target", "JPY"), ("amount", "1"), ("as_of", "2008-09-13"), ("as_of", "2999-01-01")],
            "invalid_request",
        ),
        ([("base", "USD"), ("target", "JPY"), ("amount", "1"), ("asOf", "2008-09-13")], "invalid_request"),
        # "ſ".upper() == "S": a non-ASCII spelling must not become a currency code.
        ([("base", "u\u017fd"), ("target", "JPY"), ("amount", "1")], "unknown_currency"),
    ],
)
async def test_a_quote_with_an_ambiguous_query_is_refused(client: Any, query: list[tuple[str, str]], code: str) -> None:
    http, _ = client
    response = await http.get("/v1/quote", params=query)
    assert response.status == 422 and response.content_type == "application/problem+json"
    assert (await response.json())["code"] == code


async def test_a_non_ascii_code_is_not_upper_cased_into_a_currency(client: Any) -> None:
    http, requester = client
    body = {"base_currency": "u\u017fd", "target_currency": "JPY", "amount": "1.00", "request_id": str(uuid.uuid4())}
    response = await http.post("/v1/conversions", json=body)
    assert response.status == 422 and (await response.json())["code"] == "unknown_currency"
    assert requester.calls == []


NASTY_AS_OF: list[tuple[object, str | None]] = [
    ("0000-01-01", "invalid_as_of"),  # no year 0 in the proleptic Gregorian calendar
    ("9999-12-31", "as_of_in_future"),
    ("9999-12-31T23:59:59-01:00", "invalid_as_of"),  # past datetime's range once in UTC
    ("0001-01-01T00:00:00+01:00", "invalid_as_of"),  # before it
    ("2016-12-31T23:59:60Z", "invalid_as_of"),  # a leap second: no rate was ever published in one
    ("2024-02-30", "invalid_as_of"),
    ("\u0662\u0660\u0662\u0664-01-01", "invalid_as_of"),  # Arabic-Indic digits
    ("2008-09-15T14:00:00+24:00", "invalid_as_of"),
    ("2008-09-15T14:00:00.123456789012Z", "invalid_as_of"),
    ("2008-09-15\n", "invalid_as_of"),
    ("", "invalid_as_of"),
    (["2008-09-15"], "invalid_as_of"),
    (1221487200, "invalid_as_of"),
    ("2008-09-15t14:00:00z", None),
    ("2008-09-15 14:00:00+23:59", None),
    (None, None),  # null is absent: the current rates
]


@pytest.mark.parametrize(("value", "reason"), NASTY_AS_OF)
def test_the_kafka_reader_never_raises_on_a_nasty_as_of(value: object, reason: str | None) -> None:
    parsed = parse_request(raw(as_of=value), max_amount=Decimal(10**9))
    assert (parsed.rejection.reason if parsed.rejection else None) == reason


@pytest.mark.parametrize(("value", "reason"), [(v, r) for v, r in NASTY_AS_OF if r is not None])
async def test_a_nasty_as_of_over_http_is_a_422_problem_naming_it(client: Any, value: object, reason: str) -> None:
    http, requester = client
    body = {"base_currency": "USD", "target_currency": "JPY", "amount": "1.00", "request_id": str(uuid.uuid4())}
    posted = await http.post("/v1/conversions", json={**body, "as_of": value})
    assert (posted.status, posted.content_type) == (422, "application/problem+json")
    problem = await posted.json()
    assert problem["code"] == reason and "as_of" in problem["detail"], problem
    if isinstance(value, str):
        params = {"base": "USD", "target": "JPY", "amount": "1", "as_of": value}
        quoted = await http.get("/v1/quote", params=params)
        assert (quoted.status, (await quoted.json())["code"]) == (422, reason)
    assert requester.calls == []


async def test_as_of_before_the_first_rate_or_today_is_a_readable_answer(client: Any) -> None:
    http, _ = client
    params = {"base": "USD", "target": "JPY", "amount": "1"}
    before = await http.get("/v1/quote", params={**params, "as_of": "1999-01-03"})
    assert (before.status, (await before.json())["code"]) == (404, "no_rate")
    year_one = await http.get("/v1/quote", params={**params, "as_of": "0001-01-01"})
    assert (year_one.status, (await year_one.json())["code"]) == (404, "no_rate")
    today = await http.get("/v1/quote", params={**params, "as_of": utc_now().date().isoformat()})
    assert today.status == 200 and (await today.json())["rate_ids"] == [str(LEGS[4].rate_id), str(LEGS[5].rate_id)]
