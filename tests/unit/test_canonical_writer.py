"""The canonical writer (ces/events/canonical_writer.py, `RateFetchedWriter`) against the model: what it
writes is, byte for byte, what `RateFetched(...).to_json()` writes; what it declines is what it cannot
write that way."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ces.events.canonical_writer import ConversionAuditedWriter, RateFetchedWriter
from ces.events.conversions import ConversionAudited
from ces.events.rates import RateFetched
from tests.unit.test_canonical_decoding import instants

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

codes = st.from_regex(r"[A-Z]{3}", fullmatch=True) | st.sampled_from(["usd", "EURO", "EÜR", ""])
providers = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True) | st.text(max_size=70)
values = (
    st.decimals(allow_nan=False, allow_infinity=False)
    | st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{1,20})?(E[+-]?[0-9]{1,2})?", fullmatch=True).map(Decimal)
    | st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("0"), Decimal("-0.5"), Decimal("1E+3")])
)


@SETTINGS
@given(
    provider=providers,
    base=codes,
    target=codes,
    value=values,
    published=instants,
    fetched=instants,
    fetch_id=st.uuids(),
    event_id=st.uuids(),
    rate_id=st.uuids(),
)
def test_the_writer_writes_what_the_model_writes_or_declines(
    provider: str,
    base: str,
    target: str,
    value: Decimal,
    published: datetime,
    fetched: datetime,
    fetch_id: uuid.UUID,
    event_id: uuid.UUID,
    rate_id: uuid.UUID,
) -> None:
    writer = RateFetchedWriter.for_publication(
        provider_name=provider, base_currency=base, published_at=published, fetched_at=fetched, fetch_id=fetch_id
    )
    written = writer and writer.write(
        event_id=str(event_id), rate_id=str(rate_id), target_currency=target, rate_value=value
    )
    try:
        model = RateFetched(
            event_id=event_id,
            occurred_at=fetched,
            rate_id=rate_id,
            base_currency=base,
            target_currency=target,
            rate_value=value,
            provider_name=provider,
            published_at=published,
            fetched_at=fetched,
            fetch_id=fetch_id,
        ).to_json()
    except ValueError:  # the model refuses it: the writer must have declined
        assert written is None
        return
    if written is not None:
        assert written == model
    plain = published.utcoffset() == timedelta(0) == fetched.utcoffset()
    if plain and provider.isascii() and all(c.isalnum() or c in "_.-" for c in provider):
        assert written == model  # plain fields are always written, never declined


def test_a_plain_publication_is_written_as_the_model_writes_it() -> None:
    at = datetime(2024, 3, 14, 15, 0, 0, 1, tzinfo=UTC)
    writer = RateFetchedWriter.for_publication(
        provider_name="ecb", base_currency="EUR", published_at=at, fetched_at=at, fetch_id=uuid.UUID(int=3)
    )
    assert writer is not None
    event = RateFetched.for_quote(
        provider_name="ecb",
        base_currency="EUR",
        target_currency="XAG",
        rate_value=Decimal("1.91E-7"),
        published_at=at,
        fetched_at=at,
        fetch_id=uuid.UUID(int=3),
    )
    written = writer.write(
        event_id=str(event.event_id), rate_id=str(event.rate_id), target_currency="XAG", rate_value=Decimal("1.91E-7")
    )
    assert written == event.to_json() and b'"rate_value":"0.000000191"' in written


amounts = st.decimals(allow_nan=False, allow_infinity=False) | st.from_regex(
    r"[0-9]{1,20}(\.[0-9]{1,20})?(E[+-]?[0-9]{1,2})?", fullmatch=True
).map(Decimal)


@SETTINGS
@given(
    ids=st.lists(st.uuids(), min_size=4, max_size=4),
    rate_ids=st.lists(st.uuids(), min_size=1, max_size=2),
    kind=st.sampled_from(["direct", "inverse", "cross"]),
    base=codes,
    target=codes,
    decimals=st.lists(amounts, min_size=4, max_size=4),
    occurred=instants,
    converted=st.none() | instants,
    requested_by=st.none() | st.uuids(),
    as_of=st.none() | instants,
)
def test_the_audit_writer_writes_what_the_model_writes(
    ids: list[uuid.UUID],
    rate_ids: list[uuid.UUID],
    kind: str,
    base: str,
    target: str,
    decimals: list[Decimal],
    occurred: datetime,
    converted: datetime | None,
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
            converted_at=occurred if converted is None else converted,  # the worker's: one instant for both
            requested_by=requested_by,
            as_of=as_of,
        )
    except ValueError:
        return  # an instant past year 9999 in UTC: no such event to write
    writer = ConversionAuditedWriter()
    assert writer.write(event) == event.to_json()
    assert writer.write(event) == event.to_json()  # again, with its instant's text kept


def test_a_batch_of_audits_is_written_as_the_model_writes_each() -> None:
    now = datetime(2026, 11, 26, 9, 0, 0, 1, tzinfo=UTC)
    later = now + timedelta(microseconds=1)
    events = [
        ConversionAudited(
            event_id=uuid.uuid4(),
            occurred_at=at,
            audit_id=uuid.uuid4(),
            request_id=uuid.uuid4(),
            rate_id=rate_id,
            rate_ids=[rate_id],
            rate_kind="direct",
            base_currency="EUR",
            target_currency="USD",
            input_amount=Decimal("100.00"),
            rate_value=Decimal("1.0892"),
            margin=Decimal("0.0010"),
            output_amount=Decimal("108.81"),
            converted_at=at,
        )
        for at, rate_id in ((now, uuid.uuid4()), (now, uuid.uuid4()), (later, uuid.uuid4()), (now, uuid.uuid4()))
    ]
    writer = ConversionAuditedWriter()
    assert [writer.write(e) for e in events] == [e.to_json() for e in events]


@SETTINGS
@given(
    base=codes,
    rates=st.lists(st.tuples(codes, values, st.uuids(), st.uuids()), max_size=6),
    at=instants,
)
def test_a_publication_written_at_once_is_each_rate_written_with_its_key_or_declined_as_a_whole(
    base: str, rates: list[tuple[str, Decimal, uuid.UUID, uuid.UUID]], at: datetime
) -> None:
    writer = RateFetchedWriter.for_publication(
        provider_name="ecb", base_currency=base, published_at=at, fetched_at=at, fetch_id=uuid.UUID(int=3)
    )
    if writer is None:
        return
    one_by_one = [
        writer.write(event_id=str(event_id), rate_id=str(rate_id), target_currency=target, rate_value=value)
        for target, value, event_id, rate_id in rates
    ]
    written = writer.write_all(
        [str(event_id) for *_, event_id, _ in rates],
        [str(rate_id) for *_, rate_id in rates],
        [(target, value) for target, value, *_ in rates],
    )
    if None in one_by_one:
        assert written is None
    else:
        keys = [f"{base}:{target}".encode() for target, *_ in rates]
        assert written == list(zip(keys, one_by_one, strict=True))
