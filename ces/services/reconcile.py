"""Reconciliation of `conversion-requests` with their outcomes: the pure accounting, no Kafka.

Every request message must end in exactly one of: a decision for its `request_id` (on
`conversions-audited` or `conversions-rejected`), or a dead letter of that very message (matched by
its source topic, partition and offset). A message with neither is *missing*: a gap.

Counting rules:
- Columns count **messages** of the requests topic, so per partition
  `produced == audited + rejected + dead_lettered + missing` always holds. A duplicate (a producer
  retry) is a message like any other: it is answered by its request id's one decision.
- A message whose own coordinates were dead-lettered counts as dead-lettered even if its request id
  was decided through another message (the dead letter is the more specific evidence).
- One decision per request id. The same decision published again (a redelivery re-publishes the
  stored decision byte for byte) is not a second one; two different bodies for one request id (an
  audit and a rejection, or two audits that differ) are a *double decision*.
- Bytes are never trusted: anything that does not yield a request id (invalid UTF-8, not JSON, deep
  nesting, huge numbers) is "no request id", never an error.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from uuid import UUID

from ces.events.requests import sniff_request_id_value

AUDITED: Literal["audited"] = "audited"
REJECTED: Literal["rejected"] = "rejected"
DecisionKind = Literal["audited", "rejected"]

# The conversion handler's rules (ces.services.conversions.parse_request): past 16 KiB it only sniffs
# the first 4 KiB for the id; an id is a UUID string of at most 64 characters.
MAX_REQUEST_BYTES = 16 * 1024
_SNIFF_BYTES = 4096
_MAX_ID_CHARS = 64

Headers = Sequence[tuple[str, bytes | None]]


def _id(value: Any) -> bytes | None:
    """The 16 bytes of a request id as `uuid.UUID(value)` reads it (the handler's rule), or None."""
    if not isinstance(value, str) or len(value) > _MAX_ID_CHARS:
        return None
    # The canonical form (nearly every id) without building a UUID object, 5x cheaper; any other
    # spelling (upper case is fine here too; braces, urn:uuid:, no hyphens) goes through UUID.
    if len(value) == 36 and value[8] == value[13] == value[18] == value[23] == "-":
        try:
            raw = bytes.fromhex(value.replace("-", ""))
        except ValueError:
            raw = b""
        if len(raw) == 16:
            return raw
    try:
        return UUID(value).bytes
    except ValueError:
        return None


def _sniff(head: bytes) -> bytes | None:
    return _id(sniff_request_id_value(head))


def _request_key(raw: bytes | None) -> bytes | None:
    if not raw:
        return None
    try:
        if len(raw) > MAX_REQUEST_BYTES:
            return _sniff(raw[:_SNIFF_BYTES])
        payload = json.loads(raw)
        return _id(payload.get("request_id")) if isinstance(payload, dict) else None
    except Exception:  # any bytes at all: RecursionError, the int digit limit, MemoryError...
        return None


def request_id_of(raw: bytes | None) -> UUID | None:
    """The request id the conversion handler would read from these bytes, or None. Never raises.

    At least as lenient as the handler: an id it reads, this reads too (else a decided request would look
    missing); an id only this reads belongs to a message the handler dead-lettered, matched by offset.
    """
    key = _request_key(raw)
    return UUID(bytes=key) if key is not None else None


# re.ASCII: a str pattern's `\d` is any Unicode digit ("١٢h" read as 12 hours); `\s` any Unicode space.
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw])\s*$", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """A duration back from now (`90s`, `15m`, `2h`, `7d`, `1w`), `YYYY-MM-DD` (midnight UTC) or RFC 3339."""
    match = _DURATION.match(value)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"not a duration (15m, 2h, 7d) nor an RFC 3339 instant: {value!r}") from exc
    if len(value.strip()) == 10:  # a bare date
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is None:
        raise ValueError(f"instant without a UTC offset: {value!r} (add Z or +HH:MM)")
    return parsed.astimezone(UTC)


@dataclass
class PartitionCounts:
    partition: int | None  # None for the totals
    produced: int = 0
    request_ids: int = 0
    audited: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    missing: int = 0

    def add(self, other: PartitionCounts) -> None:
        self.produced += other.produced
        self.audited += other.audited
        self.rejected += other.rejected
        self.dead_lettered += other.dead_lettered
        self.missing += other.missing


@dataclass(frozen=True)
class Missing:
    partition: int
    offset: int
    request_id: UUID | None


@dataclass(frozen=True)
class DoubleDecision:
    request_id: UUID
    decisions: tuple[DecisionKind, ...]  # one entry per distinct body, sorted (topics are read concurrently)


@dataclass
class ReconcileReport:
    requests_topic: str
    partitions: list[PartitionCounts]
    totals: PartitionCounts
    missing: list[Missing]  # the first `limit`, by partition and offset
    double_decisions: list[DoubleDecision]
    decisions_read: int = 0
    unmatched_decisions: int = 0  # decisions for request ids not in the window (before --since, expired)
    unreadable_decisions: int = 0  # a decision with neither a key nor a body naming a request id
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    since: datetime | None = None
    waited_seconds: float = 0.0
    seconds: float = 0.0
    limit: int = 20

    @property
    def ok(self) -> bool:
        return self.totals.missing == 0 and not self.double_decisions

    def as_dict(self) -> dict[str, Any]:
        def counts(c: PartitionCounts) -> dict[str, Any]:
            out = {k: v for k, v in c.__dict__.items() if k != "partition"}
            return out if c.partition is None else {"partition": c.partition, **out}

        return {
            "ok": self.ok,
            "requests_topic": self.requests_topic,
            "since": self.since.isoformat() if self.since else None,
            "partitions": [counts(p) for p in self.partitions],
            "totals": counts(self.totals),
            "missing": [
                {"partition": m.partition, "offset": m.offset, "request_id": m.request_id and str(m.request_id)}
                for m in self.missing
            ],
            "double_decisions": [
                {"request_id": str(d.request_id), "decisions": list(d.decisions)}
                for d in self.double_decisions[: self.limit]
            ],
            "double_decisions_total": len(self.double_decisions),
            "decisions_read": self.decisions_read,
            "unmatched_decisions": self.unmatched_decisions,
            "unreadable_decisions": self.unreadable_decisions,
            "dead_letter_reasons": dict(sorted(self.dead_letter_reasons.items())),
            "waited_seconds": round(self.waited_seconds, 3),
            "seconds": round(self.seconds, 3),
        }


def _digest(value: bytes | None) -> int:
    # Only ever compared between the bodies published for one request id: a 64-bit hash is plenty.
    return hash(value or b"")


class Ledger:
    """What was read so far, kept small: request ids as 16 bytes, a 64-bit hash per decision body,
    dead letters as (partition, offset) of the requests topic."""

    def __init__(self, requests_topic: str) -> None:
        self.requests_topic = requests_topic
        self._requests: dict[int, list[tuple[int, bytes | None]]] = {}
        self._decisions: dict[bytes, tuple[DecisionKind, int]] = {}  # the first body seen per request id
        self._conflicts: dict[bytes, dict[tuple[DecisionKind, int], None]] = {}  # every distinct body, ordered
        self._dead: set[tuple[int, int]] = set()
        self._reasons: Counter[str] = Counter()
        self.decisions_read = 0
        self.unreadable_decisions = 0

    def add_partition(self, partition: int) -> None:
        """Declare a partition of the requests topic, so an empty one still shows in the report."""
        self._requests.setdefault(partition, [])

    def add_request(self, partition: int, offset: int, value: bytes | None) -> None:
        self._requests.setdefault(partition, []).append((offset, _request_key(value)))

    def add_decision(self, kind: DecisionKind, key: bytes | None, value: bytes | None) -> None:
        self.decisions_read += 1
        # The key is the request id (cheap); the body is the fallback for a producer that set no key.
        rid = None
        if key and len(key) <= _MAX_ID_CHARS:
            try:
                rid = _id(key.decode())
            except UnicodeDecodeError:
                rid = None
        if rid is None:
            rid = _request_key(value)
        if rid is None:
            self.unreadable_decisions += 1
            return
        variant = (kind, _digest(value))
        first = self._decisions.setdefault(rid, variant)
        if first != variant:
            variants = self._conflicts.setdefault(rid, {first: None})
            variants[variant] = None

    def add_dead_letter(self, headers: Headers) -> None:
        try:
            found = dict(headers)
            if found.get("ces.dlq.source.topic") != self.requests_topic.encode():
                return
            partition = int(found["ces.dlq.source.partition"] or b"")
            offset = int(found["ces.dlq.source.offset"] or b"")
            reason = (found.get("ces.dlq.reason") or b"?").decode(errors="replace")
        except (KeyError, ValueError, TypeError, AttributeError):  # a header missing, null or garbled
            return
        self._dead.add((partition, offset))
        self._reasons[reason] += 1

    def report(self, *, limit: int = 20) -> ReconcileReport:
        partitions: list[PartitionCounts] = []
        totals = PartitionCounts(None)
        missing: list[Missing] = []
        all_ids: set[bytes] = set()
        for partition in sorted(self._requests):
            counts = PartitionCounts(partition)
            ids: set[bytes] = set()
            for offset, rid in self._requests[partition]:
                counts.produced += 1
                if rid is not None:
                    ids.add(rid)
                decided = self._decisions.get(rid) if rid is not None else None
                if (partition, offset) in self._dead:
                    counts.dead_lettered += 1
                elif decided is not None:
                    if decided[0] == AUDITED:
                        counts.audited += 1
                    else:
                        counts.rejected += 1
                else:
                    counts.missing += 1
                    if len(missing) < limit:
                        missing.append(Missing(partition, offset, UUID(bytes=rid) if rid else None))
            counts.request_ids = len(ids)
            all_ids |= ids
            totals.add(counts)
            partitions.append(counts)
        totals.request_ids = len(all_ids)
        doubles = [
            DoubleDecision(UUID(bytes=rid), tuple(sorted(kind for kind, _ in variants)))
            for rid, variants in self._conflicts.items()
        ]
        return ReconcileReport(
            requests_topic=self.requests_topic,
            partitions=partitions,
            totals=totals,
            missing=missing,
            double_decisions=sorted(doubles, key=lambda d: str(d.request_id)),
            decisions_read=self.decisions_read,
            unmatched_decisions=sum(1 for rid in self._decisions if rid not in all_ids),
            unreadable_decisions=self.unreadable_decisions,
            dead_letter_reasons=dict(self._reasons),
            limit=limit,
        )


class ReconcileSource(Protocol):
    """Reads the topics into a ledger: the requests once, up to the cut taken first (the outcomes may be
    read along with them, up to ends taken after the cut); then the outcomes as often as asked, each time
    from where the previous read stopped up to their current ends."""

    async def read_requests(self, ledger: Ledger) -> None: ...

    async def read_outcomes(self, ledger: Ledger) -> None: ...


async def reconcile(
    source: ReconcileSource,
    requests_topic: str,
    *,
    wait_seconds: float = 0.0,
    poll_seconds: float = 1.0,
    limit: int = 20,
    since: datetime | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> ReconcileReport:
    """Read the requests up to the cut, then the outcomes until no message is missing or `wait_seconds`
    ran out (requests still in the worker's hands are not a gap yet). Double decisions do not heal by
    waiting, so only missing messages are waited for."""
    clock = clock or time.monotonic
    sleep = sleep or asyncio.sleep
    started = clock()
    ledger = Ledger(requests_topic)
    await source.read_requests(ledger)
    deadline = clock() + wait_seconds
    outcomes_started = clock()
    while True:
        await source.read_outcomes(ledger)
        report = ledger.report(limit=limit)
        remaining = deadline - clock()
        if report.totals.missing == 0 or remaining <= 0:
            break
        await sleep(min(poll_seconds, remaining))
    report.since = since
    report.waited_seconds = clock() - outcomes_started if wait_seconds else 0.0
    report.seconds = clock() - started
    return report


def render_lines(report: ReconcileReport) -> Iterable[str]:
    """The findings under the table, for people: what is missing, what was decided twice."""
    t = report.totals
    if t.missing:
        shown = len(report.missing)
        yield f"{t.missing} request message(s) have no outcome; the first {shown}:"
        for m in report.missing:
            rid = str(m.request_id) if m.request_id else "(no readable request_id)"
            yield f"  {report.requests_topic}[{m.partition}]@{m.offset}  {rid}"
    if report.double_decisions:
        yield f"{len(report.double_decisions)} request id(s) decided more than once (different bodies):"
        for d in report.double_decisions[: report.limit]:
            yield f"  {d.request_id}  {' + '.join(d.decisions)}"
    if report.dead_letter_reasons:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.dead_letter_reasons.items()))
        yield f"dead letters of {report.requests_topic}: {reasons}"
    if report.unmatched_decisions or report.unreadable_decisions:
        yield (
            f"decisions read: {report.decisions_read}; for request ids outside the window: "
            f"{report.unmatched_decisions}; without a readable request id: {report.unreadable_decisions}"
        )
    verdict = "OK: every request message has exactly one outcome" if report.ok else "GAP"
    waited = f", waited {report.waited_seconds:.1f}s" if report.waited_seconds else ""
    yield f"{verdict} ({report.seconds:.1f}s{waited})"
