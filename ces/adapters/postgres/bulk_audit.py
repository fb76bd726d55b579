"""The replay's bulk write of decisions, in the caller's one transaction: the request rows are COPYed straight
into `conversion_request` under a savepoint; only when that meets a request id claimed before (a unique
violation: a re-published decision, a batch of a resumed replay) are they instead COPYed into a session-local
staging table and claimed with one `INSERT ... ON CONFLICT DO NOTHING RETURNING`. The audit and rejection rows
of the newly claimed request ids are then COPYed straight into their tables.

The rows are those `AuditStore.record` writes (same columns, same values rendered the same way: `str` of
each Decimal, ISO timestamps with their offset), with the same rules: the first decision for a request id
in the batch stands, a request id already claimed keeps its stored decision (`ON CONFLICT DO NOTHING` on
`conversion_request`, and only the newly claimed ids get an audit or rejection row). A constraint
violation fails the statement, as it fails the live path's batch, and the replay then retries one event at
a time. What it does not do: return the standing decisions (the replay does not need them).
A decision may come as its COPY lines already (`Prepared`, read straight from its bytes by `audit_rows.py`,
byte for byte the lines written here for the decoded event); it counts like the event in the dedupe.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from psycopg2.errors import UniqueViolation
from psycopg2.extensions import encodings
from sqlalchemy import Engine

from ces.adapters.postgres.audit_rows import BATCH_AUDITS, BATCH_REQUESTS
from ces.adapters.postgres.copy_text import copy_text
from ces.events.conversions import ConversionAudited, ConversionRejected, Decision
from ces.projections.replay.model import Prepared, PreparedBatch

# The batch's rows and its checkpoint commit together or not at all whether or not the commit waits for its
# WAL flush; not waiting saves a disk flush per batch. A database crash can then lose the last batches
# committed, rows and checkpoints alike, and a re-run reads them again. The replay ends with a synchronous
# commit (`PostgresReplayTarget.restore_constraints`), which flushes them all.
_BEGIN = "SET LOCAL synchronous_commit = off; SAVEPOINT replay_claim"
# A COPY straight into conversion_request claims every row or fails whole on the first id claimed before, which
# `ROLLBACK TO SAVEPOINT` undoes: then the staging path decides row by row. Either way the newly claimed ids
# are exactly the ones `ON CONFLICT DO NOTHING` would insert, so the rows are the same; the straight COPY
# skips the staging COPY, the speculative inserts and the RETURNING of every batch that meets no claimed id
# (all of a fresh target's, normally).
# psycopg2 reads a COPY's file in chunks of this size, one Python `read` and one CopyData message each: its
# default (8 KiB) is ~100 of them for a batch of 5,000 audits, a whole batch is one or two (client CPU per row
# 0.22-0.32 -> 0.12-0.15 us, docs/replay.md).
_CHUNK = 1 << 20
_REQUESTS = "COPY conversion_request (request_id, outcome, decided_at) FROM STDIN"
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS replay_stage_request (
    request_id uuid NOT NULL, outcome text NOT NULL, decided_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS;
"""
_CLAIM = """
INSERT INTO conversion_request (request_id, outcome, decided_at)
SELECT request_id, outcome, decided_at FROM pg_temp.replay_stage_request
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id::text
"""
_AUDITS = (
    "COPY conversion_audit (id, request_id, rate_used_id, second_rate_id, rate_kind, base_currency, "
    "target_currency, input_amount, rate_value, margin, output_amount, converted_at, requested_by, as_of) FROM STDIN"
)
_REJECTIONS = "COPY conversion_rejection (request_id, reason, message, rejected_at, requested_by, as_of) FROM STDIN"


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


def _rejection_line(d: ConversionRejected) -> str:
    return _line(
        d.request_id, copy_text(d.reason), copy_text(d.message), _at(d.rejected_at), d.requested_by, _at(d.as_of)
    )


def copy_decisions(engine: Engine, decisions: Sequence[Decision | Prepared | PreparedBatch]) -> None:
    """Blocking: the batch's decisions in one transaction on `engine` (its COMMIT carries any armed checkpoint).

    A `PreparedBatch`'s request ids are distinct and none is another decision's in `decisions` (the replay
    declines a batch otherwise), so it stands wherever it is in the sequence."""
    requests: list[str | bytes] = []
    rows: dict[bytes, tuple[bool, str | bytes]] = {}  # request id -> (an audit?, its line)
    batches: list[PreparedBatch] = []
    for d in decisions:
        # The first decision in the batch stands; `key()` is the request id as `str(UUID)` writes it, which
        # is how a prepared one spells it.
        if isinstance(d, PreparedBatch):
            batches.append(d)
            continue
        if isinstance(d, Prepared):
            if d.key not in rows:
                requests.append(d.rows[0])
                rows[d.key] = (True, d.rows[1])
            continue
        key = d.key()
        if key in rows:
            continue
        if isinstance(d, ConversionAudited):
            request, audit = audited_lines(d)
            requests.append(request)
            rows[key] = (True, audit)
        else:
            requests.append(_line(d.request_id, "rejected", _at(d.occurred_at)))
            rows[key] = (False, _rejection_line(d))
    seen = set(rows)
    for batch in batches:
        if not seen.isdisjoint(batch.keys) or len(batch.keys) != len(set(batch.keys)):
            raise ValueError("a prepared batch shares a request id with another decision of the write")
        seen.update(batch.keys)
    if not seen:
        return
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            codec = encodings[cursor.connection.encoding]
            copies = ([(_REQUESTS, (_text(requests, codec),))] if requests else []) + [
                (BATCH_REQUESTS, b.rows[0]) for b in batches
            ]
            batch_audits = [b.rows[1] for b in batches]
            if not _copy_requests(cursor, copies):
                cursor.execute(_STAGE)
                for statement, pieces in copies:
                    staged = statement.replace("conversion_request", "pg_temp.replay_stage_request", 1)
                    cursor.copy_expert(staged, Pieces(pieces), _CHUNK)
                cursor.execute(_CLAIM)
                if cursor.rowcount != len(seen):  # some were claimed before: only the newly claimed get rows
                    claimed = {row[0].encode() for row in cursor.fetchall()}
                    rows = {key: row for key, row in rows.items() if key in claimed}
                    batch_audits = [_claimed_lines(b, claimed) for b in batches]
            audits = [line for audit, line in rows.values() if audit]
            if audits:
                cursor.copy_expert(_AUDITS, io.BytesIO(_text(audits, codec)), _CHUNK)
            for pieces in batch_audits:
                if any(pieces):
                    cursor.copy_expert(BATCH_AUDITS, Pieces(pieces), _CHUNK)
            if len(audits) < len(rows):
                rejections = [line for audit, line in rows.values() if not audit]
                cursor.copy_expert(_REJECTIONS, io.BytesIO(_text(rejections, codec)), _CHUNK)
        finally:
            cursor.close()


def _claimed_lines(batch: PreparedBatch, claimed: set[bytes]) -> tuple[bytes, ...]:
    """The batch's audit lines of the newly claimed request ids only (a line per key, in order), a piece per
    piece of the batch's text."""
    keys = iter(batch.keys)  # shared by the pieces: each takes as many as it has lines (lines first in zip)
    return tuple(
        b"".join(line + b"\n" for line, key in zip(piece.split(b"\n")[:-1], keys, strict=False) if key in claimed)
        for piece in batch.rows[1]
    )


class Pieces:
    """A COPY's data for psycopg2's `copy_expert` from a text in pieces of whole lines: each `read` returns the
    next piece as it is (psycopg2 sends what it gets as one CopyData message and stops at an empty one), so
    the pieces are never copied into one buffer; empty pieces are skipped, and a piece larger than `_CHUNK`
    is read in chunks of that size."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces: Iterator[bytes] = iter(pieces)
        self._rest = io.BytesIO()

    def read(self, size: int = -1) -> bytes:
        chunk = self._rest.read(size)
        while not chunk:
            piece = next(self._pieces, None)
            if piece is None:
                return b""
            if size < 0 or len(piece) <= size:
                chunk = piece
            else:
                self._rest = io.BytesIO(piece)
                chunk = self._rest.read(size)
        return chunk


def _copy_requests(cursor: Any, copies: list[tuple[str, tuple[bytes, ...]]]) -> bool:
    """Every request row COPYed straight in (True), or none of them: some id was claimed before (False)."""
    cursor.execute(_BEGIN)
    try:
        for statement, pieces in copies:
            cursor.copy_expert(statement, Pieces(pieces), _CHUNK)
    except UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT replay_claim")
        return False
    return True


def _text(lines: list[str | bytes], codec: str) -> bytes:
    # Prepared lines are bytes in ASCII (their regex admits nothing else), so they are the same in any client
    # encoding; the others are text, encoded as psycopg2 would encode them.
    return b"".join(line if isinstance(line, bytes) else line.encode(codec) for line in lines)
