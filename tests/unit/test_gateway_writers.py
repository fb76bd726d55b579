"""The gateway's hot-path writers against the model: a request event (`write_request`) and a 201 body (`audit_body`)
are, byte for byte, what pydantic's serializer writes (`to_json()`, `audit_body_by_model`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ces.events.conversions import ConversionAudited, ConversionRequested
from ces.events.request_writer import write_request
from ces.http.conversion_input import Refusal, read_request
from ces.http.schemas import audit_body, audit_body_by_model
from tests.unit.test_canonical_decoding import instants
from tests.unit.test_canonical_writer import amounts, codes

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    ids=st.lists(st.uuids(), min_size=2, max_size=2),
    base=codes,
    target=codes,
    amount=amounts,
    occurred=instants,
    requested_by=st.none() | st.uuids(),
    as_of=st.none() | st.sampled_from(["2024-03-01", "2024-03-01T12:00:00Z", "2024-03-01T12:00:00.5+02:00"]),
)
def test_a_request_is_written_as_the_model_writes_it(
    ids: list[uuid.UUID],
    base: str,
    target: str,
    amount: Decimal,
    occurred: datetime,
    requested_by: uuid.UUID | None,
    as_of: str | None,
) -> None:
    try:
        event = ConversionRequested(
            event_id=ids[0],
            occurred_at=occurred,
            request_id=ids[1],
            base_currency=base,
            target_currency=target,
            amount=amount,
            requested_by=requested_by,
            as_of=as_of,
        )
    except ValueError:
        return  # the model refuses it: no such event to write
    assert write_request(event) == event.to_json()


def test_a_plain_request_is_written_without_the_model() -> None:
    event = ConversionRequested(
        request_id=uuid.uuid4(), base_currency="EUR", target_currency="USD", amount=Decimal("100.00")
    )
    written = write_request(event)
    assert written == event.to_json() and b'"amount":"100.00","requested_by":null,"as_of":null}' in written


@SETTINGS
@given(
    ids=st.lists(st.uuids(), min_size=4, max_size=4),
    rate_ids=st.lists(st.uuids(), min_size=1, max_size=2),
    kind=st.sampled_from(["direct", "inverse", "cross"]),
    base=codes,
    target=codes,
    decimals=st.lists(amounts, min_size=4, max_size=4),
    occurred=instants,
    converted=instants,
    requested_by=st.none() | st.uuids(),
    as_of=st.none() | instants,
)
def test_the_audit_body_is_what_the_serializer_writes(
    ids: list[uuid.UUID],
    rate_ids: list[uuid.UUID],
    kind: str,
    base: str,
    target: str,
    decimals: list[Decimal],
    occurred: datetime,
    converted: datetime,
    requested_by: uuid.UUID | None,
    as_of: datetime | None,
) -> None:
    try:
        event = ConversionAudited(
            event_id=ids[0],
            occurred_at=occurred,
            audit_id=ids[1],
            request_id=ids[2],
            rate_id=rate_ids[0],
            rate_ids=rate_ids,
            rate_kind=kind,  # type: ignore[arg-type]  # one of the Literal's values
            base_currency=base,
            target_currency=target,
            input_amount=decimals[0],
            rate_value=decimals[1],
            margin=decimals[2],
            output_amount=decimals[3],
            converted_at=converted,
            requested_by=requested_by,
            as_of=as_of,
        )
    except ValueError:
        return  # an instant past year 9999 in UTC: no such event
    assert audit_body(event) == audit_body_by_model(event)


@SETTINGS
@given(
    base=st.sampled_from(["EUR", "usd", "JPY", "KWD", "XAU", "GBP"]),
    target=st.sampled_from(["USD", "eur", "JPY", "BHD", "CHF"]),
    amount=st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,4})?", fullmatch=True),
    requested_by=st.none() | st.uuids(),
)
def test_a_request_built_without_validation_is_the_validated_event(
    base: str, target: str, amount: str, requested_by: uuid.UUID | None
) -> None:
    wanted = read_request(
        {"base_currency": base, "target_currency": target, "amount": amount, "request_id": str(uuid.uuid4())},
        idempotency_key=None,
        max_amount=Decimal("1000000000000"),
        max_clock_skew=timedelta(seconds=5),
        requested_by=requested_by,
    )
    if isinstance(wanted, Refusal):
        return
    validated = ConversionRequested.model_validate(wanted.model_dump())
    assert wanted == validated
    assert [type(getattr(wanted, f)) for f in ConversionRequested.model_fields] == [
        type(getattr(validated, f)) for f in ConversionRequested.model_fields
    ]
    assert write_request(wanted) == wanted.to_json() == validated.to_json()
