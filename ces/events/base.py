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
    GetCoreSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic_core import CoreSchema
from pydantic_core import core_schema as cs

from ces.domain.money import (
    DECIMAL_PATTERN,
    DECIMAL_SCHEMA_PATTERN,
    MAX_DECIMAL_TEXT,
    InvalidDecimal,
    parse_decimal,
)


class _NativeFirst:
    """Annotated metadata: try `fast` (pydantic-core, no Python call) first and hand its result to the rest
    of the type's validators; when `fast` refuses, the rest get the original input and decide alone, with
    their own error messages. Sound only when every value `fast` accepts, the rest accept too, with the
    same result, and accept it unchanged when it is already converted (the differential test in
    tests/unit/test_decoder_equivalence.py checks both)."""

    def __init__(self, fast: CoreSchema) -> None:
        self.fast = fast

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        first = cs.union_schema([self.fast, cs.any_schema()], mode="left_to_right")
        return cs.chain_schema([first, handler(source)])


class _CoreSchemaOnly:
    """Annotated metadata: the type is exactly this pydantic-core schema."""

    def __init__(self, schema: CoreSchema) -> None:
        self.schema = schema

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return self.schema


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


# The common case (an exact `str` of plain decimal text, at most 64 characters) is checked by pydantic-core's
# Rust regex and converted by `Decimal` without a Python frame (about 3x cheaper per field than
# `parse_decimal`; benchmarks/decode.py). Anything else falls through to `_decimal_from_text`, which
# refuses it with its own message. Rust's `[0-9]` is ASCII (its `\d` is not) and its `$` is the end of the
# text only, so the fast path accepts a subset of what `parse_decimal` does ("١٢٣", "1e5", " 1", "1\n"
# all fall through and are refused there).
_FAST_DECIMAL = cs.no_info_after_validator_function(
    Decimal, cs.str_schema(strict=True, max_length=MAX_DECIMAL_TEXT, pattern=f"^(?:{DECIMAL_PATTERN})$")
)

DecimalStr = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_text),  # receives the fast path's Decimal unchanged
    _NativeFirst(_FAST_DECIMAL),
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


_CODE_ERROR = "must be a three-letter upper-case ISO 4217 code"

# Validated by pydantic-core alone (no Python call), with the message the former Python validator gave:
# any string, then `[A-Z]{3}` (Rust regex: ASCII letters; `$` is the end of the text, not before a "\n").
CurrencyCode = Annotated[
    str,
    _CoreSchemaOnly(
        cs.chain_schema(
            [
                cs.str_schema(),
                cs.custom_error_schema(
                    cs.str_schema(pattern=r"^[A-Z]{3}$"),
                    custom_error_type="currency_code",
                    custom_error_message=f"Value error, {_CODE_ERROR}",
                ),
            ]
        )
    ),
    WithJsonSchema({"type": "string"}),
]


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
