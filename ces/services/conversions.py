"""Deciding conversion requests: look the rates up, check freshness, apply the math, or reject.

The decision for a request is either a `ConversionAudited` or a `ConversionRejected`; whoever calls
`decide` records it (`ces.adapters.postgres.audit_store.AuditStore`) before publishing, so the first decision for a
`request_id` is the only one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from ces.domain.conversion import Rejection, RejectionReason, check_fresh, convert
from ces.events.base import printable, utc_now
from ces.events.conversions import (
    ConversionAudited,
    ConversionRejected,
    Decision,
    audit_id_for,
    result_event_id,
)
from ces.events.requests import ParsedRequest
from ces.services.rate_lookup import RateLookup


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
                decisions.append(rejected(request.request_id, request.rejection, now, request.requested_by))
                continue
            valid = request.valid
            rate = rates[(valid.base.code, valid.target.code)]
            if rate is None:
                message = f"no rate for {valid.base.code}->{valid.target.code}"
                decisions.append(
                    rejected(request.request_id, Rejection(RejectionReason.NO_RATE, message), now, request.requested_by)
                )
                continue
            stale = check_fresh(rate, now, self.max_rate_age)
            if stale is not None:
                decisions.append(rejected(request.request_id, stale, now, request.requested_by))
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
                    requested_by=request.requested_by,
                )
            )
        return decisions


def rejected(
    request_id: UUID, rejection: Rejection, now: datetime, requested_by: UUID | None = None
) -> ConversionRejected:
    return ConversionRejected(
        event_id=result_event_id("ConversionRejected", request_id),
        occurred_at=now,
        request_id=request_id,
        reason=rejection.reason.value,
        message=printable(rejection.message)[:1000],
        rejected_at=now,
        requested_by=requested_by,
    )
