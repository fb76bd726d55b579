"""The audit projection: one insert-only decision per `request_id` (an audit or a rejection).

`record` claims each request id in `conversion_request` and writes the audit or rejection rows in the
same transaction. A request id claimed before (producer retry, redelivery, replay) keeps its first
decision: `record` returns that stored decision, rebuilt into an event identical to the first one.
The live conversion handler and `ces replay` both write through here. Blocking: call from a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert

from ces.adapters.postgres.tables import conversion_audit, conversion_rejection, conversion_request
from ces.events.conversions import ConversionAudited, ConversionRejected, Decision, result_event_id


class AuditStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, decisions: Sequence[Decision]) -> list[Decision]:
        """Write what is new; return, in input order, the decision that stands for each request."""
        unique: dict[UUID, Decision] = {}
        for decision in decisions:
            unique.setdefault(decision.request_id, decision)
        if not unique:
            return []
        with self.engine.begin() as conn:
            claimed = set(
                conn.execute(
                    insert(conversion_request).on_conflict_do_nothing().returning(conversion_request.c.request_id),
                    [
                        {
                            "request_id": d.request_id,
                            "outcome": "audited" if isinstance(d, ConversionAudited) else "rejected",
                            "decided_at": d.occurred_at,
                        }
                        for d in unique.values()
                    ],
                ).scalars()
            )
            audits = [d for d in unique.values() if d.request_id in claimed and isinstance(d, ConversionAudited)]
            rejections = [d for d in unique.values() if d.request_id in claimed and isinstance(d, ConversionRejected)]
            if audits:
                conn.execute(insert(conversion_audit), [_audit_row(a) for a in audits])
            if rejections:
                conn.execute(insert(conversion_rejection), [_rejection_row(r) for r in rejections])
            earlier = [rid for rid in unique if rid not in claimed]
            standing = {rid: d for rid, d in unique.items() if rid in claimed}
            if earlier:
                standing.update(self._load(conn, earlier))
        return [standing[d.request_id] for d in decisions if d.request_id in standing]

    def get(self, request_ids: Sequence[UUID]) -> dict[UUID, Decision]:
        with self.engine.connect() as conn:
            return self._load(conn, list(request_ids))

    def get_audit(self, audit_id: UUID) -> ConversionAudited | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(conversion_audit).where(conversion_audit.c.id == audit_id)).mappings().first()
        return audited_from_row(row) if row else None

    @staticmethod
    def _load(conn: Connection, request_ids: list[UUID]) -> dict[UUID, Decision]:
        found: dict[UUID, Decision] = {}
        for row in conn.execute(
            select(conversion_audit).where(conversion_audit.c.request_id.in_(request_ids))
        ).mappings():
            found[row["request_id"]] = audited_from_row(row)
        for row in conn.execute(
            select(conversion_rejection).where(conversion_rejection.c.request_id.in_(request_ids))
        ).mappings():
            found[row["request_id"]] = rejected_from_row(row)
        return found


def _audit_row(a: ConversionAudited) -> dict[str, Any]:
    return {
        "id": a.audit_id,
        "request_id": a.request_id,
        "rate_used_id": a.rate_ids[0],
        "second_rate_id": a.rate_ids[1] if len(a.rate_ids) > 1 else None,
        "rate_kind": a.rate_kind,
        "base_currency": a.base_currency,
        "target_currency": a.target_currency,
        "input_amount": a.input_amount,
        "rate_value": a.rate_value,
        "margin": a.margin,
        "output_amount": a.output_amount,
        "converted_at": a.converted_at,
        "requested_by": a.requested_by,
    }


def _rejection_row(r: ConversionRejected) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "reason": r.reason,
        "message": r.message,
        "rejected_at": r.rejected_at,
        "requested_by": r.requested_by,
    }


def audited_from_row(row: Any) -> ConversionAudited:
    rate_ids = [row["rate_used_id"]] + ([row["second_rate_id"]] if row["second_rate_id"] else [])
    return ConversionAudited(
        event_id=result_event_id("ConversionAudited", row["request_id"]),
        occurred_at=row["converted_at"],
        audit_id=row["id"],
        request_id=row["request_id"],
        rate_id=row["rate_used_id"],
        rate_ids=rate_ids,
        rate_kind=row["rate_kind"],
        base_currency=row["base_currency"],
        target_currency=row["target_currency"],
        input_amount=row["input_amount"],
        rate_value=row["rate_value"],
        margin=row["margin"],
        output_amount=row["output_amount"],
        converted_at=row["converted_at"],
        requested_by=row["requested_by"],
    )


def rejected_from_row(row: Any) -> ConversionRejected:
    return ConversionRejected(
        event_id=result_event_id("ConversionRejected", row["request_id"]),
        occurred_at=row["rejected_at"],
        request_id=row["request_id"],
        reason=row["reason"],
        message=row["message"],
        rejected_at=row["rejected_at"],
        requested_by=row["requested_by"],
    )
