"""One conversion's result as a batch slot or a `ces convert` result line: the audit, or the problem+json object
`POST /v1/conversions` would have answered, with an `outcome` (audited, rejected, refused, undecided)."""

from __future__ import annotations

from typing import Any

from ces.events.base import rfc3339
from ces.events.conversions import ConversionAudited, ConversionRequested
from ces.http.conversion_input import Refusal
from ces.http.problems import PROBLEMS, problem_body
from ces.http.schemas import audit_json
from ces.services.conversion_requests import (
    BackendUnavailable,
    IdempotencyConflict,
    Outcome,
    Overloaded,
    ResultTimeout,
)


def _result(outcome: str, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    slot: dict[str, Any] = {}
    if "request_id" in extra:
        slot["request_id"] = extra["request_id"]
    slot.update(outcome=outcome, status=PROBLEMS[code][0], problem=problem_body(code, detail, **extra))
    return slot


def refused_result(refusal: Refusal) -> dict[str, Any]:
    return _result("refused", refusal.code, refusal.detail, **refusal.extra)


def decided_result(request: ConversionRequested, outcome: Outcome, timeout: float) -> dict[str, Any]:
    rid = str(request.request_id)
    if isinstance(outcome, tuple):
        decision, replayed = outcome
        if isinstance(decision, ConversionAudited):
            conversion = audit_json(decision)
            return {
                "request_id": rid,
                "outcome": "audited",
                "status": 201,
                "replayed": replayed,
                "conversion": conversion,
            }
        slot = _result(
            "rejected",
            decision.reason.value,
            decision.message,
            request_id=rid,
            rejected_at=rfc3339(decision.rejected_at),
        )
        slot["replayed"] = replayed
        return slot
    if isinstance(outcome, IdempotencyConflict):
        return _result("refused", "idempotency_conflict", str(outcome), request_id=rid)
    if isinstance(outcome, Overloaded):
        detail = "no room among the pending conversions before the deadline; retry this item"
        return _result("undecided", "overloaded", detail, request_id=rid)
    if isinstance(outcome, BackendUnavailable):
        return _result("undecided", "unavailable", str(outcome), request_id=rid)
    assert isinstance(outcome, ResultTimeout)
    detail = f"no result within {timeout:g}s; retry with the same request_id"
    return _result("undecided", "result_timeout", detail, request_id=rid)
