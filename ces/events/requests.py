"""Reading a `ConversionRequested` from a producer's bytes, leniently: a request with a usable `request_id`
is always answered (a bad field becomes a rejection the producer can read), only one without is dead-lettered.

Strict decoding (`registry.decode`) would refuse the whole event at the first bad field and lose the id to
answer; this reader checks the same contract (the model's fields and version) field by field instead.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from ces.domain.as_of import AsOfError, parse_as_of, read_as_of
from ces.domain.conversion import Rejection, RejectionReason, ValidRequest, validate
from ces.domain.rates import DEFAULT_MAX_CLOCK_SKEW
from ces.events.base import utc_now
from ces.events.canonical import layout_of
from ces.events.conversions import ConversionRequested
from ces.events.registry import UndecodableEvent, parse_json_object

MAX_REQUEST_BYTES = 16 * 1024
# The wire contract is the model's: its fields, its version.
ALLOWED_FIELDS = frozenset(ConversionRequested.model_fields)
CURRENT_VERSION: int = ConversionRequested.model_fields["schema_version"].default
# v1 (before `requested_by`) is still what most producers send: a v1 request is a v3 one without a key and
# without `as_of`; a v2 one, without `as_of`.
SUPPORTED_VERSIONS = frozenset(range(1, CURRENT_VERSION + 1))
_CANONICAL = layout_of(ConversionRequested)


@dataclass(frozen=True)
class ParsedRequest:
    """A request with a usable id; `valid` is set when it passed validation, else `rejection`."""

    request_id: UUID
    valid: ValidRequest | None
    rejection: Rejection | None
    requested_by: UUID | None = None
    # The past instant to price at (UTC; a date is the end of that day), None for the current rates.
    as_of: datetime | None = None


def parse_request(
    raw: bytes,
    *,
    max_amount: Decimal,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
) -> ParsedRequest:
    """Bytes -> request. Raises `UndecodableEvent` (dead letter) only when no usable `request_id` exists:
    everything wrong after that is a rejection the producer can read on `conversions-rejected`.

    `as_of` in the future is judged against this process's clock now (`max_clock_skew` allowed for an
    instant), when the request is read: a request decided once keeps that decision."""
    if len(raw) > MAX_REQUEST_BYTES:
        request_id = _sniff_request_id(raw[:4096])
        if request_id is None:
            raise UndecodableEvent("oversized", f"{len(raw)} bytes, more than {MAX_REQUEST_BYTES}")
        return _rejected(request_id, RejectionReason.INVALID_REQUEST, "request too large")
    # The gateway's requests are in the canonical layout: read as `json` reads them, without its scanner.
    payload = (_CANONICAL.payload(raw) if _CANONICAL and type(raw) is bytes else None) or parse_json_object(raw)
    request_id = _uuid(payload.get("request_id"))
    if request_id is None:
        raise UndecodableEvent("invalid_request_id", "request_id is missing or not a UUID")
    event_type = payload.get("event_type", "ConversionRequested")
    if event_type != "ConversionRequested":
        raise UndecodableEvent("unexpected_event_type", f"{event_type!r} on the conversion request topic")
    version = payload.get("schema_version", CURRENT_VERSION)
    if version not in SUPPORTED_VERSIONS:
        return _rejected(request_id, RejectionReason.INVALID_REQUEST, f"unsupported schema_version {version!r}")
    unknown = sorted(set(payload) - ALLOWED_FIELDS)
    if unknown:
        return _rejected(request_id, RejectionReason.INVALID_REQUEST, f"unknown fields: {', '.join(unknown)[:200]}")
    requested_by = payload.get("requested_by")
    if requested_by is not None:
        requested_by = _uuid(requested_by)
        if requested_by is None:
            return _rejected(request_id, RejectionReason.INVALID_REQUEST, "requested_by is not a UUID")
    as_of: datetime | None = None
    if payload.get("as_of") is not None:
        try:
            as_of = parse_as_of(payload["as_of"], utc_now(), max_clock_skew)
        except AsOfError as exc:
            rejection = _rejected(request_id, RejectionReason(exc.reason), exc.message)
            # A future as_of is a readable instant: the rejection carries it; a malformed one has none.
            future = exc.reason == RejectionReason.AS_OF_IN_FUTURE
            return _with(rejection, requested_by, read_as_of(payload["as_of"])[0] if future else None)
    outcome = validate(
        payload.get("base_currency"), payload.get("target_currency"), payload.get("amount"), max_amount=max_amount
    )
    if isinstance(outcome, Rejection):
        return ParsedRequest(request_id, None, outcome, requested_by, as_of)
    return ParsedRequest(request_id, outcome, None, requested_by, as_of)


def _uuid(value: Any) -> UUID | None:
    """A UUID field of a request (`request_id`, `event_id`, `requested_by`), or None when absent or malformed."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def sniff_request_id_value(head: bytes) -> Any:
    """The value of the first `"request_id": "..."` in the head of a request too large to parse whole,
    or None. The reconciliation reads ids with this same rule."""
    marker = b'"request_id"'
    at = head.find(marker)
    if at < 0:
        return None
    rest = head[at + len(marker) :].lstrip(b" \t\r\n:").lstrip()
    if not rest.startswith(b'"'):
        return None
    end = rest.find(b'"', 1)
    if end <= 0:
        return None
    try:
        return json.loads(rest[: end + 1])
    except ValueError:
        return None


def _sniff_request_id(head: bytes) -> UUID | None:
    return _uuid(sniff_request_id_value(head))


def _rejected(request_id: UUID, reason: RejectionReason, message: str) -> ParsedRequest:
    return ParsedRequest(request_id, None, Rejection(reason, message))


def _with(parsed: ParsedRequest, requested_by: UUID | None, as_of: datetime | None) -> ParsedRequest:
    return dataclasses.replace(parsed, requested_by=requested_by, as_of=as_of)
