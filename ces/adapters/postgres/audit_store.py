"""The audit projection: one insert-only decision per `request_id` (an audit or a rejection).

`record` claims each request id in `conversion_request` and writes the audit or rejection rows in the
same transaction. A request id claimed before (producer retry, redelivery, replay) keeps its first
decision: `record` returns that stored decision, rebuilt into an event identical to the first one.
The live conversion handler and `ces replay` both write through here. Blocking: call from a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, select, text

from ces.adapters.postgres.tables import conversion_audit, conversion_rejection
from ces.events.conversions import ConversionAudited, ConversionRejected, Decision, result_event_id


class AuditStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, decisions: Sequence[Decision]) -> list[Decision]:
        """Write what is new; return, in input order, the decision that stands for each request: the very
        object given when this call recorded it, a rebuilt one when it was decided before."""
        unique = first_per_request(decisions)
        if not unique:
            return []
        with self.engine.begin() as conn:
            claimed = {UUID(str(rid)) for rid in conn.execute(RECORD, record_params(unique.values())).scalars()}
            standing, earlier = split_claimed(unique, claimed)
            if earlier:
                standing.update(self._load(conn, earlier))
        return in_input_order(decisions, standing)

    def get(self, request_ids: Sequence[UUID]) -> dict[UUID, Decision]:
        with self.engine.connect() as conn:
            return self._load(conn, list(request_ids))

    def get_audit(self, audit_id: UUID) -> ConversionAudited | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(conversion_audit).where(conversion_audit.c.id == audit_id)).mappings().first()
        return audited_from_row(row) if row else None

    def recent(self, limit: int) -> list[ConversionAudited]:
        """The newest audits, newest first (index `conversion_audit_converted_at`)."""
        a = conversion_audit.c
        query = select(conversion_audit).order_by(a.converted_at.desc(), a.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [audited_from_row(row) for row in conn.execute(query).mappings()]

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


# One statement (one round trip, compiled once) records a whole batch: claim every request id, then
# write the audit or rejection rows of the ids this statement claimed, and return those ids. Columns travel
# as arrays (unnest), so the statement's text is the same for any batch size. The foreign keys from the
# audit and rejection rows to their claim are checked at the end of the statement, after the claim.
# (SQLAlchemy cannot cache the PostgreSQL `insert ... on conflict`, and recompiled it per batch.)
RECORD_SQL = """
    WITH claimed AS (
        INSERT INTO conversion_request (request_id, outcome, decided_at)
        SELECT * FROM unnest(CAST(:request_ids AS uuid[]), CAST(:outcomes AS text[]),
                             CAST(:decided_at AS timestamptz[]))
        ON CONFLICT DO NOTHING
        RETURNING request_id
    ), audits AS (
        INSERT INTO conversion_audit (id, request_id, rate_used_id, second_rate_id, rate_kind, base_currency,
                                      target_currency, input_amount, rate_value, margin, output_amount, converted_at,
                                      requested_by, as_of)
        SELECT a.* FROM unnest(
            CAST(:a_id AS uuid[]), CAST(:a_request_id AS uuid[]), CAST(:a_rate_used_id AS uuid[]),
            CAST(:a_second_rate_id AS uuid[]), CAST(:a_rate_kind AS text[]), CAST(:a_base AS text[]),
            CAST(:a_target AS text[]), CAST(:a_input AS numeric[]), CAST(:a_rate AS numeric[]),
            CAST(:a_margin AS numeric[]), CAST(:a_output AS numeric[]), CAST(:a_converted_at AS timestamptz[]),
            CAST(:a_requested_by AS uuid[]), CAST(:a_as_of AS timestamptz[])
        ) AS a (id, request_id, rate_used_id, second_rate_id, rate_kind, base_currency, target_currency,
                input_amount, rate_value, margin, output_amount, converted_at, requested_by, as_of)
        JOIN claimed USING (request_id)
        RETURNING request_id
    ), rejections AS (
        INSERT INTO conversion_rejection (request_id, reason, message, rejected_at, requested_by, as_of)
        SELECT r.* FROM unnest(
            CAST(:r_request_id AS uuid[]), CAST(:r_reason AS text[]), CAST(:r_message AS text[]),
            CAST(:r_rejected_at AS timestamptz[]), CAST(:r_requested_by AS uuid[]), CAST(:r_as_of AS timestamptz[])
        ) AS r (request_id, reason, message, rejected_at, requested_by, as_of)
        JOIN claimed USING (request_id)
        RETURNING request_id
    )
    SELECT request_id FROM claimed
"""
RECORD = text(RECORD_SQL)


def first_per_request(decisions: Iterable[Decision]) -> dict[UUID, Decision]:
    """The first decision given for each request id, in input order: the one a record call tries to claim."""
    unique: dict[UUID, Decision] = {}
    for decision in decisions:
        unique.setdefault(decision.request_id, decision)
    return unique


def split_claimed(unique: dict[UUID, Decision], claimed: set[UUID]) -> tuple[dict[UUID, Decision], list[UUID]]:
    """The decisions this call recorded (they stand as given), and the request ids decided earlier."""
    standing = {rid: d for rid, d in unique.items() if rid in claimed}
    return standing, [rid for rid in unique if rid not in claimed]


def in_input_order(decisions: Sequence[Decision], standing: dict[UUID, Decision]) -> list[Decision]:
    """What a record call returns: the standing decision for each input, in input order."""
    return [standing[d.request_id] for d in decisions if d.request_id in standing]


def record_params(decisions: Iterable[Decision]) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {
        name: []
        for name in [
            "request_ids",
            "outcomes",
            "decided_at",
            "a_id",
            "a_request_id",
            "a_rate_used_id",
            "a_second_rate_id",
            "a_rate_kind",
            "a_base",
            "a_target",
            "a_input",
            "a_rate",
            "a_margin",
            "a_output",
            "a_converted_at",
            "a_requested_by",
            "a_as_of",
            "r_request_id",
            "r_reason",
            "r_message",
            "r_rejected_at",
            "r_requested_by",
            "r_as_of",
        ]
    }
    for d in decisions:
        params["request_ids"].append(str(d.request_id))
        params["decided_at"].append(d.occurred_at)
        if isinstance(d, ConversionAudited):
            params["outcomes"].append("audited")
            for name, value in (
                ("a_id", str(d.audit_id)),
                ("a_request_id", str(d.request_id)),
                ("a_rate_used_id", str(d.rate_ids[0])),
                ("a_second_rate_id", str(d.rate_ids[1]) if len(d.rate_ids) > 1 else None),
                ("a_rate_kind", d.rate_kind),
                ("a_base", d.base_currency),
                ("a_target", d.target_currency),
                ("a_input", d.input_amount),
                ("a_rate", d.rate_value),
                ("a_margin", d.margin),
                ("a_output", d.output_amount),
                ("a_converted_at", d.converted_at),
                ("a_requested_by", _text(d.requested_by)),
                ("a_as_of", d.as_of),
            ):
                params[name].append(value)
        else:
            params["outcomes"].append("rejected")
            params["r_request_id"].append(str(d.request_id))
            params["r_reason"].append(d.reason)
            params["r_message"].append(d.message)
            params["r_rejected_at"].append(d.rejected_at)
            params["r_requested_by"].append(_text(d.requested_by))
            params["r_as_of"].append(d.as_of)
    return params


def _text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


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
        as_of=row["as_of"],
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
        as_of=row["as_of"],
    )
