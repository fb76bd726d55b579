"""Deciding conversion requests: parse what producers sent, validate, look rates up, apply the math.

The decision for a request is either a `ConversionAudited` or a `ConversionRejected`; whoever calls
`decide` records it (`ces.adapters.postgres.audit_store.AuditStore`) before publishing, so the first decision for a
`request_id` is the only one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from ces.domain.conversion import Rejection, RejectionReason, ValidRequest, check_fresh, convert, validate
from ces.events.base import printable, utc_now
from ces.events.conversions import (
    CONVERSION_NAMESPACE,
    ConversionAudited,
    ConversionRejected,
    Decision,
    audit_id_for,
    result_event_id,
)
from ces.events.registry import UndecodableEvent, parse_json_object
from ces.services.rate_lookup import RateLookup

MAX_REQUEST_BYTES = 16 * 1024


@dataclass(frozen=True)
class ParsedRequest:
    """A request with a usable id; `valid` is set when it passed validation, else `rejection`."""

    request_id: UUID
    event_id: UUID
    occurred_at: datetime
    valid: ValidRequest | None
    rejection: Rejection | None


def parse_request(raw: bytes, timestamp_ms: int | None, *, max_amount: Decimal) -> ParsedRequest:
    """Bytes -> request. Raises `UndecodableEvent` (dead letter) only when no usable `request_id` exists:
    everything wrong after that is a rejection the producer can read on `conversions-rejected`."""
    if len(raw) > MAX_REQUEST_BYTES:
        request_id = _sniff_request_id(raw[:4096])
        if request_id is None:
            raise UndecodableEvent("oversized", f"{len(raw)} bytes, more than {MAX_REQUEST_BYTES}")
        return _rejected(request_id, timestamp_ms, RejectionReason.INVALID_REQUEST, "request too large")
    payload = parse_json_object(raw)
    request_id = _request_id(payload.get("request_id"))
    if request_id is None:
        raise UndecodableEvent("invalid_request_id", "request_id is missing or not a UUID")
    event_type = payload.get("event_type", "ConversionRequested")
    if event_type != "ConversionRequested":
        raise UndecodableEvent("unexpected_event_type", f"{event_type!r} on the conversion request topic")
    version = payload.get("schema_version", 1)
    if version != 1:
        return _rejected(
            request_id, timestamp_ms, RejectionReason.INVALID_REQUEST, f"unsupported schema_version {version!r}"
        )
    allowed = {
        "request_id",
        "base_currency",
        "target_currency",
        "amount",
        "event_id",
        "event_type",
        "schema_version",
        "occurred_at",
    }
    unknown = sorted(set(payload) - allowed)
    if unknown:
        return _rejected(
            request_id, timestamp_ms, RejectionReason.INVALID_REQUEST, f"unknown fields: {', '.join(unknown)[:200]}"
        )
    outcome = validate(
        payload.get("base_currency"), payload.get("target_currency"), payload.get("amount"), max_amount=max_amount
    )
    event_id = _request_id(payload.get("event_id")) or uuid5(CONVERSION_NAMESPACE, f"ConversionRequested|{request_id}")
    occurred_at = _when(timestamp_ms)
    if isinstance(outcome, Rejection):
        return ParsedRequest(request_id, event_id, occurred_at, None, outcome)
    return ParsedRequest(request_id, event_id, occurred_at, outcome, None)


def _request_id(value: Any) -> UUID | None:
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
    return _request_id(sniff_request_id_value(head))


def _when(timestamp_ms: int | None) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms else utc_now()


def _rejected(request_id: UUID, timestamp_ms: int | None, reason: RejectionReason, message: str) -> ParsedRequest:
    event_id = uuid5(CONVERSION_NAMESPACE, f"ConversionRequested|{request_id}")
    return ParsedRequest(request_id, event_id, _when(timestamp_ms), None, Rejection(reason, message))


class ConversionDecider:
    def __init__(
        self,
        lookup: RateLookup,
        *,
        default_margin: Decimal,
        margin_overrides: dict[str, Decimal],
        max_rate_age: timedelta,
    ) -> None:
        self.lookup = lookup
        self.default_margin = default_margin
        self.margin_overrides = margin_overrides
        self.max_rate_age = max_rate_age

    def margin(self, base: str, target: str) -> Decimal:
        return self.margin_overrides.get(f"{base}:{target}", self.default_margin)

    async def decide(self, requests: Sequence[ParsedRequest]) -> list[Decision]:
        pairs = sorted({(r.valid.base.code, r.valid.target.code) for r in requests if r.valid is not None})
        rates = await self.lookup.latest_many(pairs)
        now = utc_now()
        decisions: list[Decision] = []
        for request in requests:
            if request.valid is None:
                assert request.rejection is not None
                decisions.append(rejected(request.request_id, request.rejection, now))
                continue
            valid = request.valid
            rate = rates[(valid.base.code, valid.target.code)]
            if rate is None:
                message = f"no rate for {valid.base.code}->{valid.target.code}"
                decisions.append(rejected(request.request_id, Rejection(RejectionReason.NO_RATE, message), now))
                continue
            stale = check_fresh(rate, now, self.max_rate_age)
            if stale is not None:
                decisions.append(rejected(request.request_id, stale, now))
                continue
            margin = self.margin(valid.base.code, valid.target.code)
            decisions.append(
                ConversionAudited(
                    event_id=result_event_id("ConversionAudited", request.request_id),
                    occurred_at=now,
                    audit_id=audit_id_for(request.request_id),
                    request_id=request.request_id,
                    rate_id=rate.rate_ids[0],
                    rate_ids=list(rate.rate_ids),
                    rate_kind=rate.kind.value,
                    base_currency=valid.base.code,
                    target_currency=valid.target.code,
                    input_amount=valid.amount,
                    rate_value=rate.rate_value,
                    margin=margin,
                    output_amount=convert(valid.amount, rate.rate_value, margin, valid.target),
                    converted_at=now,
                )
            )
        return decisions


def rejected(request_id: UUID, rejection: Rejection, now: datetime) -> ConversionRejected:
    return ConversionRejected(
        event_id=result_event_id("ConversionRejected", request_id),
        occurred_at=now,
        request_id=request_id,
        reason=rejection.reason.value,
        message=printable(rejection.message)[:1000],
        rejected_at=now,
    )
