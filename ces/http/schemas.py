"""Request bodies and response models of the gateway: they validate, shape the JSON and are the OpenAPI schemas."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar, cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictStr, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from ces.domain.as_of import AS_OF_DESCRIPTION, AS_OF_SCHEMA_PATTERN
from ces.domain.money import DECIMAL_SCHEMA_PATTERN, currencies
from ces.domain.rates import DerivedRate, Rate
from ces.events.base import CurrencyCode, DecimalStr, UtcDatetime
from ces.events.conversions import ConversionAudited, ConversionRejected

# The codes CES converts, as the contract states them. Input is upper-cased first, so "usd" works too, but
# the schema promises upper-case only: one spelling per currency, the one every response uses.
SUPPORTED_CODE = {"type": "string", "enum": sorted(currencies()), "examples": ["USD"]}
CodeIn = Annotated[StrictStr, WithJsonSchema(SUPPORTED_CODE)]
AmountIn = Annotated[
    StrictStr,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_SCHEMA_PATTERN,
            "examples": ["100.00"],
            "description": "positive, at most the base currency's minor-unit decimals, at most CES_MAX_AMOUNT",
        }
    ),
]
AsOfIn = Annotated[
    StrictStr,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": AS_OF_SCHEMA_PATTERN,
            "examples": ["2008-09-15", "2008-09-15T12:00:00+02:00"],
            "description": AS_OF_DESCRIPTION,
        }
    ),
]
Kind = Literal["direct", "inverse", "cross"]


class ConversionBody(BaseModel):
    """POST /v1/conversions. Unknown fields are refused; currency codes are upper-cased.

    The amount stays text here: the domain's `validate` parses it (per currency) and says why it refuses."""

    model_config = ConfigDict(extra="forbid")

    base_currency: CodeIn
    target_currency: CodeIn = Field(description="a currency other than base_currency (else 422 unsupported_pair)")
    amount: AmountIn
    # SkipJsonSchema: `null` is accepted (it means "absent") but not advertised.
    request_id: UUID | SkipJsonSchema[None] = Field(
        default=None, description="idempotency key; or send the Idempotency-Key header (one of them is required)"
    )
    as_of: AsOfIn | SkipJsonSchema[None] = Field(default=None, description=AS_OF_DESCRIPTION)


class BatchBody(BaseModel):
    """POST /v1/conversions/batch (the OpenAPI schema; the handler reads each item with `ConversionBody`'s rules)."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(
        min_length=1,
        description="conversion requests (at most CES_GATEWAY_MAX_BATCH_ITEMS, 10,000 by default), each with "
        "the fields and rules of POST /v1/conversions and its own request_id; an item that breaks them is "
        "answered in its slot, a non-object item refuses the batch",
    )


class Out(BaseModel):
    """A response body, built from validated data (`model_construct`) and dumped as JSON."""

    def json_body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Conversion(Out):
    status: Literal["audited"]
    audit_id: UUID
    request_id: UUID
    rate_id: UUID
    rate_ids: list[UUID] = Field(min_length=1, max_length=2)
    rate_kind: Kind
    base_currency: CurrencyCode
    target_currency: CurrencyCode
    input_amount: DecimalStr
    rate_value: DecimalStr
    margin: DecimalStr
    output_amount: DecimalStr
    converted_at: UtcDatetime
    as_of: UtcDatetime | SkipJsonSchema[None] = Field(
        default=None, description="the past instant priced at (a date is the end of that day, UTC); absent: now"
    )


class Rejection(Out):
    status: Literal["rejected"]
    request_id: UUID
    reason: str
    message: str
    rejected_at: UtcDatetime
    as_of: UtcDatetime | SkipJsonSchema[None] = Field(default=None, description="the past instant asked for")


class RateLeg(Out):
    rate_id: UUID
    base_currency: CurrencyCode
    target_currency: CurrencyCode
    rate_value: DecimalStr
    provider_name: str
    published_at: UtcDatetime
    fetched_at: UtcDatetime


class RateOut(Out):
    base_currency: CurrencyCode
    target_currency: CurrencyCode
    rate_value: DecimalStr
    kind: Kind
    rate_id: UUID
    rate_ids: list[UUID]
    provider_name: str = Field(description="the legs' providers, comma-separated")
    published_at: UtcDatetime
    fetched_at: UtcDatetime
    age_seconds: int
    legs: list[RateLeg]


class RatesTable(Out):
    base_currency: CurrencyCode
    rates: dict[str, RateOut]
    missing: list[CurrencyCode]


class HistoryItem(Out):
    rate_value: DecimalStr
    kind: Kind
    published_at: UtcDatetime
    rate_ids: list[UUID]
    legs: list[RateLeg]


class RateHistory(Out):
    base_currency: CurrencyCode
    target_currency: CurrencyCode
    items: list[HistoryItem]
    # Not `exclude_none`d away: the last page says `"next": null`.
    next: str | None = Field(description="URL of the next page, null on the last")

    def json_body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Quote(Out):
    """GET /v1/quote: what a conversion would come to, computed as one is, recorded nowhere."""

    conversion_of_record: Literal[False] = Field(
        description="always false: a quote is not audited and converts nothing; POST /v1/conversions does"
    )
    base_currency: CurrencyCode
    target_currency: CurrencyCode
    input_amount: DecimalStr
    rate_value: DecimalStr = Field(description="the rate applied, before margin")
    margin: DecimalStr
    output_amount: DecimalStr = Field(description="input * rate * (1 - margin), rounded half-even to minor units")
    rate_kind: Kind
    rate_id: UUID
    rate_ids: list[UUID] = Field(min_length=1, max_length=2, description="every exchange_rate row used")
    legs: list[RateLeg]
    published_at: UtcDatetime = Field(description="the oldest leg's publication")
    priced_at: UtcDatetime = Field(description="when this quote was computed")
    as_of: UtcDatetime | SkipJsonSchema[None] = Field(
        default=None, description="the past instant priced at (a date is the end of that day, UTC); absent: now"
    )


class CurrencyOut(Out):
    code: CurrencyCode
    name: str
    minor_units: int


class Currencies(Out):
    currencies: list[CurrencyOut]


class Status(Out):
    status: str
    checks: dict[str, str] | SkipJsonSchema[None] = Field(default=None, description="readyz: each dependency")


Outcome = Literal["audited", "rejected", "refused", "undecided"]


class BatchResult(Out):
    index: int = Field(description="the item's position in the batch, from 0")
    request_id: UUID | SkipJsonSchema[None] = Field(default=None, description="absent when the item had none")
    outcome: Outcome = Field(
        description="audited; rejected (the worker's decision); refused (invalid, or an idempotency conflict: "
        "never converted); undecided (no decision within the deadline or no room: retry it with its request_id)"
    )
    status: int = Field(description="what POST /v1/conversions would have answered for this item")
    replayed: bool = Field(default=False, description="decided before (an idempotent replay)")
    conversion: Conversion | SkipJsonSchema[None] = Field(default=None, description="the audit, when audited")
    problem: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None, description="the problem+json object POST /v1/conversions would have answered, otherwise"
    )


class BatchResults(Out):
    results: list[BatchResult] = Field(description="one per item, in the items' order")
    counts: dict[Outcome, int]


class TimeSeries(Out):
    """GET /v1/timeseries (Fixer's shape plus provenance); streamed, built by `ces.http.series`."""

    base: CurrencyCode
    start_date: str = Field(description="YYYY-MM-DD")
    end_date: str = Field(description="YYYY-MM-DD")
    rates: dict[str, dict[str, DecimalStr]] = Field(description="day (YYYY-MM-DD) -> symbol -> rate")
    rate_ids: dict[str, dict[str, list[UUID]]] | SkipJsonSchema[None] = Field(
        default=None, description="day -> symbol -> the rows behind the value (absent with provenance=false)"
    )


class FluctuationLegs(Out):
    start: list[RateLeg]
    end: list[RateLeg]


class SymbolFluctuation(Out):
    start_date: str
    end_date: str
    start_rate: DecimalStr
    end_rate: DecimalStr
    change: DecimalStr = Field(description="end_rate - start_rate, exact")
    change_pct: DecimalStr = Field(description="change / start_rate * 100, 4 decimals, half-even")
    start_rate_ids: list[UUID]
    end_rate_ids: list[UUID]
    legs: FluctuationLegs


class FluctuationOut(Out):
    base: CurrencyCode
    start_date: str
    end_date: str
    rates: dict[str, SymbolFluctuation]
    missing: list[CurrencyCode] = Field(description="symbols with no rate in the range")


class RecentConversions(Out):
    conversions: list[Conversion]


class RateRow(RateLeg):
    revoked: bool


RESPONSE_MODELS: list[type[Out]] = [
    Conversion,
    Rejection,
    RateOut,
    RatesTable,
    RateHistory,
    Quote,
    Currencies,
    Status,
    BatchResults,
    TimeSeries,
    FluctuationOut,
    RecentConversions,
    RateRow,
]


M = TypeVar("M", bound=Out)


def _copy(model: type[M], source: object, **values: Any) -> M:
    # The source was validated when it was built (an event, a stored row): construct, don't re-validate.
    fields = {name: getattr(source, name) for name in model.model_fields if name not in values}
    return cast(M, model.model_construct(**fields, **values))  # the plugin types it as the bound


# The response's fields, dumped straight from the event in one serializer pass: a batch answers 10,000 audits
# at once, and building a `Conversion` first cost twice as much for the same JSON.
_CONVERSION_FIELDS = set(Conversion.model_fields) - {"status"}


def audit_json(audit: ConversionAudited) -> dict[str, Any]:
    return {"status": "audited", **audit.model_dump(mode="json", include=_CONVERSION_FIELDS, exclude_none=True)}


def audit_body(audit: ConversionAudited) -> bytes:
    """`audit_json` serialized, by pydantic's serializer in one step (a third of the time of building the dict
    and `json.dumps` of it): the same members in the same order."""
    dumped = audit.model_dump_json(include=_CONVERSION_FIELDS, exclude_none=True)
    return b'{"status":"audited",' + dumped[1:].encode()


def rejection_json(rejection: ConversionRejected) -> dict[str, Any]:
    return _copy(Rejection, rejection, status="rejected").json_body()


def leg_out(leg: Rate) -> RateLeg:
    return _copy(RateLeg, leg)


def rate_out(rate: DerivedRate, now: datetime) -> RateOut:
    return RateOut.model_construct(
        base_currency=rate.base_currency,
        target_currency=rate.target_currency,
        rate_value=rate.rate_value,
        kind=rate.kind.value,
        rate_id=rate.rate_ids[0],
        rate_ids=list(rate.rate_ids),
        provider_name=",".join(sorted({leg.provider_name for leg in rate.legs})),
        published_at=rate.published_at,
        fetched_at=rate.fetched_at,
        age_seconds=int((now - rate.published_at).total_seconds()),
        legs=[leg_out(leg) for leg in rate.legs],
    )


def rate_json(rate: DerivedRate, now: datetime) -> dict[str, Any]:
    return rate_out(rate, now).json_body()


def quote_json(
    rate: DerivedRate, amount: Decimal, margin: Decimal, output: Decimal, now: datetime, as_of: datetime | None
) -> dict[str, Any]:
    return Quote.model_construct(
        conversion_of_record=False,
        base_currency=rate.base_currency,
        target_currency=rate.target_currency,
        input_amount=amount,
        rate_value=rate.rate_value,
        margin=margin,
        output_amount=output,
        rate_kind=rate.kind.value,
        rate_id=rate.rate_ids[0],
        rate_ids=list(rate.rate_ids),
        legs=[leg_out(leg) for leg in rate.legs],
        published_at=rate.published_at,
        priced_at=now,
        as_of=as_of,
    ).json_body()
