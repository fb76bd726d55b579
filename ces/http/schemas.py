"""Request bodies and response representations of the gateway (money and rates as decimal strings)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, StrictStr

from ces.domain.rates import DerivedRate, Rate
from ces.events.base import decimal_text, rfc3339
from ces.events.conversions import ConversionAudited, ConversionRejected

ENVELOPE = {"event_id", "event_type", "schema_version", "occurred_at"}


class ConversionBody(BaseModel):
    """POST /v1/conversions. Unknown fields are refused; currency codes are upper-cased."""

    model_config = ConfigDict(extra="forbid")

    base_currency: StrictStr
    target_currency: StrictStr
    amount: StrictStr
    request_id: UUID | None = None


def audit_json(audit: ConversionAudited) -> dict[str, Any]:
    body = {k: v for k, v in audit.model_dump(mode="json").items() if k not in ENVELOPE}
    return {"status": "audited", **body}


def rejection_json(rejection: ConversionRejected) -> dict[str, Any]:
    body = {k: v for k, v in rejection.model_dump(mode="json").items() if k not in ENVELOPE}
    return {"status": "rejected", **body}


def leg_json(leg: Rate) -> dict[str, Any]:
    return {
        "rate_id": str(leg.rate_id),
        "base_currency": leg.base_currency,
        "target_currency": leg.target_currency,
        "rate_value": decimal_text(leg.rate_value),
        "provider_name": leg.provider_name,
        "published_at": rfc3339(leg.published_at),
        "fetched_at": rfc3339(leg.fetched_at),
    }


def rate_json(rate: DerivedRate, now: datetime) -> dict[str, Any]:
    providers = sorted({leg.provider_name for leg in rate.legs})
    return {
        "base_currency": rate.base_currency,
        "target_currency": rate.target_currency,
        "rate_value": decimal_text(rate.rate_value),
        "kind": rate.kind.value,
        "rate_id": str(rate.rate_ids[0]),
        "rate_ids": [str(r) for r in rate.rate_ids],
        "provider_name": ",".join(providers),
        "published_at": rfc3339(rate.published_at),
        "fetched_at": rfc3339(rate.fetched_at),
        "age_seconds": int((now - rate.published_at).total_seconds()),
        "legs": [leg_json(leg) for leg in rate.legs],
    }
