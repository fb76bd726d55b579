"""The replay's bulk write of decisions: COPY into session-local staging tables, then one INSERT ... SELECT
that claims each request id and writes the audit or rejection rows, in the caller's one transaction.

The rows are those `AuditStore.record` writes (same columns, same values rendered the same way: `str` of
each Decimal, ISO timestamps with their offset), with the same rules: the first decision for a request id
in the batch stands, a request id already claimed keeps its stored decision (`ON CONFLICT DO NOTHING` on
`conversion_request`, and only the newly claimed ids get an audit or rejection row). A constraint
violation fails the whole statement, as it fails the live path's batch, and the replay then retries one
event at a time. What it does not do: return the standing decisions (the replay does not need them).
A decision may come as its COPY lines already (`Prepared`, read straight from its bytes by `audit_rows.py`,
byte for byte the lines written here for the decoded event); it counts like the event in the dedupe.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine

from ces.adapters.postgres.copy_text import copy_text
from ces.events.conversions import ConversionAudited, ConversionRejected, Decision
from ces.projections.replay.model import Prepared

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS replay_stage_request (
    request_id uuid NOT NULL, outcome text NOT NULL, decided_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS replay_stage_audit (
    id uuid, request_id uuid, rate_used_id uuid, second_rate_id uuid, rate_kind text, base_currency text,
    target_currency text, input_amount numeric, rate_value numeric, margin numeric, output_amount numeric,
    converted_at timestamptz, requested_by uuid, as_of timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS replay_stage_rejection (
    request_id uuid, reason text, message text, rejected_at timestamptz, requested_by uuid, as_of timestamptz
) ON COMMIT DELETE ROWS;
"""

# One statement: the RETURNING of the claim feeds both inserts, and the foreign keys to
# `conversion_request` are checked at its end, when the claims are there.
_APPLY = """
WITH claimed AS (
    INSERT INTO conversion_request (request_id, outcome, decided_at)
    SELECT request_id, outcome, decided_at FROM pg_temp.replay_stage_request
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id
), audits AS (
    INSERT INTO conversion_audit (id, request_id, rate_used_id, second_rate_id, rate_kind, base_currency,
        target_currency, input_amount, rate_value, margin, output_amount, converted_at, requested_by, as_of)
    SELECT s.id, s.request_id, s.rate_used_id, s.second_rate_id, s.rate_kind, s.base_currency,
        s.target_currency, s.input_amount, s.rate_value, s.margin, s.output_amount, s.converted_at,
        s.requested_by, s.as_of
    FROM pg_temp.replay_stage_audit s JOIN claimed USING (request_id)
    RETURNING 1
)
INSERT INTO conversion_rejection (request_id, reason, message, rejected_at, requested_by, as_of)
SELECT s.request_id, s.reason, s.message, s.rejected_at, s.requested_by, s.as_of
FROM pg_temp.replay_stage_rejection s JOIN claimed USING (request_id)
"""


def _at(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _line(*fields: object) -> str:
    return "\t".join("\\N" if f is None else str(f) for f in fields) + "\n"


def audited_lines(d: ConversionAudited) -> tuple[str, str]:
    """The audit's `conversion_request` and `conversion_audit` COPY lines."""
    legs = d.rate_ids
    return _line(d.request_id, "audited", _at(d.occurred_at)), _line(
        d.audit_id,
        d.request_id,
        legs[0],
        legs[1] if len(legs) > 1 else None,
        copy_text(d.rate_kind),
        copy_text(d.base_currency),
        copy_text(d.target_currency),
        d.input_amount,
        d.rate_value,
        d.margin,
        d.output_amount,
        _at(d.converted_at),
        d.requested_by,
        _at(d.as_of),
    )


def copy_decisions(engine: Engine, decisions: Sequence[Decision | Prepared]) -> None:
    """Blocking: the batch's decisions in one transaction on `engine` (its COMMIT carries any armed checkpoint)."""
    unique: dict[bytes, Decision | Prepared] = {}
    for decision in decisions:
        # The first decision in the batch stands; `key()` is the request id as `str(UUID)` writes it, which
        # is how a prepared one spells it.
        unique.setdefault(decision.key if isinstance(decision, Prepared) else decision.key(), decision)
    if not unique:
        return
    requests, audits, rejections = io.StringIO(), io.StringIO(), io.StringIO()
    prepared_requests: list[bytes] = []
    prepared_audits: list[bytes] = []
    for d in unique.values():
        if isinstance(d, Prepared):
            prepared_requests.append(d.rows[0])
            prepared_audits.append(d.rows[1])
        elif isinstance(d, ConversionAudited):
            request, audit = audited_lines(d)
            requests.write(request)
            audits.write(audit)
        elif isinstance(d, ConversionRejected):
            requests.write(_line(d.request_id, "rejected", _at(d.occurred_at)))
            rejections.write(
                _line(
                    d.request_id,
                    copy_text(d.reason),
                    copy_text(d.message),
                    _at(d.rejected_at),
                    d.requested_by,
                    _at(d.as_of),
                )
            )
    # Prepared lines are ASCII (their regex admits nothing else): text like the others, in any client encoding.
    requests.write(b"".join(prepared_requests).decode("ascii"))
    audits.write(b"".join(prepared_audits).decode("ascii"))
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(_STAGE)
            for table, rows in (
                ("replay_stage_request", requests),
                ("replay_stage_audit", audits),
                ("replay_stage_rejection", rejections),
            ):
                if rows.tell():
                    rows.seek(0)
                    cursor.copy_expert(f"COPY pg_temp.{table} FROM STDIN", rows)
            cursor.execute(_APPLY)
        finally:
            cursor.close()
