"""The wire contract: round trips, decimal strings only, upcasting, decoding arbitrary bytes, schemas."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ces.events.rates import RateFetched, RateFetchFailed
from ces.events.registry import UndecodableEvent, decode
from ces.events.schemas import schema_documents

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"

codes = st.from_regex(r"\A[A-Z]{3}\Z")
rate_values = st.decimals(min_value=Decimal("1E-12"), max_value=Decimal("1E12"), allow_nan=False, places=12).filter(
    lambda d: d > 0
)
instants = st.datetimes(min_value=datetime(1999, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@given(base=codes, target=codes, value=rate_values, published=instants, lag=st.integers(0, 10**6))
def test_rate_fetched_round_trips_exactly(
    base: str, target: str, value: Decimal, published: datetime, lag: int
) -> None:
    event = RateFetched.for_quote(
        provider_name="ecb",
        base_currency=base,
        target_currency=target,
        rate_value=value,
        published_at=published,
        fetched_at=published + timedelta(seconds=lag),
        fetch_id=uuid.uuid4(),
    )
    raw = event.to_json()
    payload = json.loads(raw)
    assert isinstance(payload["rate_value"], str) and "E" not in payload["rate_value"]
    assert payload["published_at"].endswith("Z")
    decoded = decode(raw)
    assert decoded == event
    assert isinstance(decoded, RateFetched) and decoded.rate_value == value


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_fail_with_a_reason(raw: bytes) -> None:
    try:
        decode(raw, expected=RateFetched)
    except UndecodableEvent as exc:
        assert exc.reason in {  # decoding may also succeed: both outcomes are valid
            "invalid_json",
            "not_an_object",
            "unknown_event_type",
            "unexpected_event_type",
            "unsupported_schema_version",
            "invalid_event",
        }


def good_payload() -> dict[str, object]:
    event = RateFetched.for_quote(
        provider_name="ecb",
        base_currency="EUR",
        target_currency="USD",
        rate_value=Decimal("1.0892"),
        published_at=datetime(2024, 3, 15, 15, tzinfo=UTC),
        fetched_at=datetime(2024, 3, 15, 15, 5, tzinfo=UTC),
        fetch_id=uuid.uuid4(),
    )
    payload: dict[str, object] = json.loads(event.to_json())
    return payload


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"rate_value": 1.0892}, "invalid_event"),  # a JSON number has already lost digits
        ({"rate_value": "NaN"}, "invalid_event"),
        ({"rate_value": "-1"}, "invalid_event"),
        ({"rate_value": "1e3"}, "invalid_event"),
        ({"base_currency": "eur"}, "invalid_event"),
        ({"published_at": "2024-03-15T15:00:00"}, "invalid_event"),  # no offset
        ({"surprise": 1}, "invalid_event"),
        ({"schema_version": 99}, "unsupported_schema_version"),
        ({"event_type": "RateFetchFailed"}, "unexpected_event_type"),
        ({"event_type": "Nope"}, "unknown_event_type"),
    ],
)
def test_invalid_payloads_are_refused_with_a_reason(change: dict[str, object], reason: str) -> None:
    payload = {**good_payload(), **change}
    with pytest.raises(UndecodableEvent) as exc_info:
        decode(json.dumps(payload).encode(), expected=RateFetched)
    assert exc_info.value.reason == reason


def test_version_0_payloads_are_upcast_when_read() -> None:
    payload = good_payload()
    payload["schema_version"] = 0
    payload["source"] = payload.pop("provider_name")
    del payload["fetch_id"]
    event = decode(json.dumps(payload).encode())
    assert isinstance(event, RateFetched)
    assert event.provider_name == "ecb" and event.schema_version == 1


def test_failure_event_round_trips() -> None:
    event = RateFetchFailed(
        provider_name="ecb",
        fetch_id=uuid.uuid4(),
        attempts=3,
        retry_delays_ms=[1000, 2000],
        last_error="TransientProviderError: 503",
        retryable=True,
        failed_at=datetime(2024, 3, 15, 15, tzinfo=UTC),
    )
    assert decode(event.to_json()) == event


def test_exported_json_schemas_are_current() -> None:
    documents = schema_documents()
    assert documents, "no event types registered"
    for name, text in documents.items():
        path = DOCS / name
        assert path.exists(), f"{path} missing: run `ces events schemas`"
        assert path.read_text() == text, f"{path} is stale: run `ces events schemas`"


# Any JSON value, surrogates and NUL included in strings, integers past float range, deep-ish nesting.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec=None, exclude_categories=())),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
VALID_RATE = good_payload()


@given(field=st.sampled_from(sorted(VALID_RATE)), value=json_values)
def test_any_value_in_any_field_decodes_or_fails_with_a_reason(field: str, value: object) -> None:
    raw = json.dumps({**VALID_RATE, field: value}).encode()
    try:
        event = decode(raw, expected=RateFetched)
    except UndecodableEvent as exc:
        exc.detail.encode("utf-8")  # the reason travels in a Kafka header: always encodable
        assert "\x00" not in exc.detail
    else:
        event.to_json()  # what decodes also encodes again


@pytest.mark.parametrize(
    "published_at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2024-02-30T00:00:00Z"]
)
def test_instants_outside_the_calendar_are_refused_not_raised(published_at: str) -> None:
    with pytest.raises(UndecodableEvent) as info:
        decode(json.dumps({**VALID_RATE, "published_at": published_at}).encode(), expected=RateFetched)
    assert info.value.reason == "invalid_event"
