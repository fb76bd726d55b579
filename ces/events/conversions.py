"""Conversion events: `ConversionRequested` in, exactly one `ConversionAudited` or `ConversionRejected` out.

Ids derive from `request_id` (uuid5), so a re-emitted result for the same request is identical to the
first, byte for byte.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import Field

from ces.domain.as_of import AS_OF_DESCRIPTION, AS_OF_SCHEMA_PATTERN
from ces.domain.conversion import RejectionReason
from ces.events.base import CurrencyCode, DecimalStr, Event, UtcDatetime
from ces.events.ids import NameBasedIds
from ces.events.topics import CONVERSION_REQUESTS, CONVERSIONS_AUDITED, CONVERSIONS_REJECTED

CONVERSION_NAMESPACE = UUID("0b7c8f1e-6a0d-4c54-9b7e-3f1c2d9a4e60")
_CONVERSION_IDS = NameBasedIds(CONVERSION_NAMESPACE)


# The two fields every decision carries after its own (declared last: the canonical layout is declaration order).
RequestedBy = Annotated[
    UUID | None, Field(description="the gateway API key that asked; null for requests produced straight to Kafka")
]
PricedAsOf = Annotated[
    UtcDatetime | None,
    Field(
        description="the past instant the request asked to be priced at (a date is the end of that day, UTC); "
        "null: priced at the current rates"
    ),
]


def audit_id_for(request_id: UUID) -> UUID:
    return _CONVERSION_IDS(f"audit|{request_id}")


def result_event_id(event_type: str, request_id: UUID) -> UUID:
    return _CONVERSION_IDS(f"{event_type}|{request_id}")


class ConversionRequested(Event):
    """What a producer publishes. Only `request_id`, the currencies and `amount` are required; the
    envelope is filled in when missing (`event_id` from `request_id`, `occurred_at` from the Kafka
    record's timestamp)."""

    TOPIC: ClassVar[str] = CONVERSION_REQUESTS.name

    event_type: Literal["ConversionRequested"] = "ConversionRequested"
    schema_version: Literal[3] = 3
    request_id: UUID
    base_currency: CurrencyCode
    target_currency: CurrencyCode
    amount: DecimalStr = Field(description="positive, at most the base currency's minor-unit decimals")
    requested_by: UUID | None = Field(
        default=None, description="set by the gateway: the API key that asked (producers on Kafka leave it out)"
    )
    as_of: str | None = Field(default=None, pattern=AS_OF_SCHEMA_PATTERN, description=AS_OF_DESCRIPTION)

    def key(self) -> bytes:
        return str(self.request_id).encode()


class ConversionAudited(Event):
    TOPIC: ClassVar[str] = CONVERSIONS_AUDITED.name

    event_type: Literal["ConversionAudited"] = "ConversionAudited"
    schema_version: Literal[3] = 3
    audit_id: UUID
    request_id: UUID
    rate_id: UUID = Field(description="the exchange_rate row used (the first leg for a cross rate)")
    rate_ids: list[UUID] = Field(description="every exchange_rate row used, in derivation order")
    rate_kind: Literal["direct", "inverse", "cross"]
    base_currency: CurrencyCode
    target_currency: CurrencyCode
    input_amount: DecimalStr
    rate_value: DecimalStr = Field(description="the rate applied, before margin")
    margin: DecimalStr
    output_amount: DecimalStr = Field(description="input * rate * (1 - margin), rounded half-even to minor units")
    converted_at: UtcDatetime
    requested_by: RequestedBy = None
    as_of: PricedAsOf = None

    def key(self) -> bytes:
        return str(self.request_id).encode()


class ConversionRejected(Event):
    TOPIC: ClassVar[str] = CONVERSIONS_REJECTED.name

    event_type: Literal["ConversionRejected"] = "ConversionRejected"
    schema_version: Literal[3] = 3
    request_id: UUID
    reason: RejectionReason
    message: str
    rejected_at: UtcDatetime
    requested_by: RequestedBy = None
    as_of: PricedAsOf = None

    def key(self) -> bytes:
        return str(self.request_id).encode()


# One decision per request id: the audit of a conversion, or its rejection.
Decision = ConversionAudited | ConversionRejected
