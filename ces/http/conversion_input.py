"""A conversion request as HTTP callers send it -> the `ConversionRequested` to publish, or the problem why not.

The single `POST /v1/conversions` and every item of `POST /v1/conversions/batch` go through `read_request`,
so both accept exactly the same fields with the same rules and build the same event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from ces.domain.as_of import AsOfError, parse_as_of, read_as_of
from ces.domain.conversion import Rejection, validate
from ces.domain.money import code_as_typed
from ces.events.base import utc_now
from ces.events.conversions import ConversionRequested
from ces.events.registry import validation_detail
from ces.http.schemas import ConversionBody


@dataclass(frozen=True)
class Refusal:
    """Why a request is not published: a problem code (`ces.http.problems.PROBLEMS`), a detail, extra members."""

    code: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)


def read_request(
    payload: object,
    *,
    idempotency_key: str | None,
    max_amount: Decimal,
    max_clock_skew: timedelta,
    requested_by: UUID | None,
) -> ConversionRequested | Refusal:
    """Validate one request body (a decoded JSON value) and build its event; never raises on any input.

    `max_clock_skew`: how far an `as_of` may lie ahead of this clock before it is `as_of_in_future`."""
    try:
        body = ConversionBody.model_validate(payload)
    except ValidationError as exc:
        fields = {e["loc"][:1] for e in exc.errors()}
        if fields == {("as_of",)}:
            # The same code and words as the Kafka reader's for a non-string as_of, not pydantic's union talk.
            try:
                read_as_of(payload["as_of"] if isinstance(payload, dict) else None)
            except AsOfError as bad:
                return Refusal(bad.reason, bad.message)
        amount_only = fields == {("amount",)}
        code = "invalid_amount" if amount_only else "invalid_request"
        return Refusal(code, validation_detail(exc) + (" (send a decimal string)" if amount_only else ""))
    request_id = body.request_id
    if idempotency_key is not None:
        try:
            key = UUID(idempotency_key)
        except ValueError:
            return Refusal("invalid_request", "Idempotency-Key must be a UUID")
        if request_id is not None and request_id != key:
            return Refusal(
                "idempotency_key_mismatch", "request_id and Idempotency-Key must be equal when both are sent"
            )
        request_id = key
    if request_id is None:
        return Refusal("invalid_request", "send a request_id (UUID) in the body or an Idempotency-Key header")
    base, target = code_as_typed(body.base_currency), code_as_typed(body.target_currency)
    checked = validate(base, target, body.amount, max_amount=max_amount)
    if isinstance(checked, Rejection):
        return Refusal(checked.reason.value, checked.message, {"request_id": str(request_id)})
    if body.as_of is not None:
        try:
            parse_as_of(body.as_of, utc_now(), max_clock_skew)
        except AsOfError as exc:
            return Refusal(exc.reason, exc.message, {"request_id": str(request_id)})
    return ConversionRequested(
        request_id=request_id,
        base_currency=checked.base.code,
        target_currency=checked.target.code,
        amount=checked.amount,
        requested_by=requested_by,
        as_of=body.as_of,
    )
