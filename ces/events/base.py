"""The event envelope and the field types every event shares (decimal strings, UTC timestamps)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from ces.domain.money import DECIMAL_SCHEMA_PATTERN, InvalidDecimal, parse_decimal

_CODE = re.compile(r"[A-Z]{3}")


def _decimal_from_text(value: Any) -> Decimal:
    # JSON numbers are refused on purpose: a float has already lost the provider's digits.
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise ValueError('must be a decimal string such as "1.0712", not a JSON number')
    try:
        return parse_decimal(value)
    except InvalidDecimal as exc:
        raise ValueError(str(exc)) from exc


def decimal_text(value: Decimal) -> str:
    """Plain notation, exact digits: Decimal('1.2E-7') -> '0.00000012'."""
    return format(value, "f")


DecimalStr = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_text),
    PlainSerializer(decimal_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_SCHEMA_PATTERN, "examples": ["1.0712"]}),
]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset (RFC 3339)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # `9999-12-31T23:59:59-01:00` is a valid RFC 3339 text whose UTC instant is past year 9999:
        # a validation error (a clean dead letter), not an OverflowError escaping the decoder.
        raise ValueError("timestamp is outside the representable range (years 1-9999 in UTC)") from None


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _currency_code(value: str) -> str:
    if not _CODE.fullmatch(value):
        raise ValueError("must be a three-letter upper-case ISO 4217 code")
    return value


CurrencyCode = Annotated[str, AfterValidator(_currency_code)]


def printable(text: str) -> str:
    """Text any backend accepts: lone surrogates and NUL (which UTF-8, Kafka headers and PostgreSQL refuse)
    become visible escapes. For messages that quote what a producer sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s#'\"<>)]*")


def without_query_strings(text: str) -> str:
    """URLs in `text` lose their query strings (`?access_key=...` -> `?***`): provider errors quote the URL
    they failed on, and a Fixer key travels in the query string, so no error text may carry one."""
    return _QUERY.sub(r"\1?***", text)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Envelope shared by every event. Subclasses pin `event_type` and `schema_version` with Literals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TOPIC: ClassVar[str]

    event_id: UUID = Field(default_factory=uuid4)
    event_type: str
    schema_version: int
    occurred_at: UtcDatetime = Field(default_factory=utc_now)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def key(self) -> bytes:
        """The Kafka message key; it decides the partition, and so the order per key."""
        raise NotImplementedError
