"""The replay's vocabulary: options, phases, partitions, reports and the errors it raises."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import NamedTuple

from ces.events.base import Event
from ces.events.conversions import ConversionAudited, ConversionRejected
from ces.events.rates import RateFetched, RateRevoked
from ces.events.topics import CONVERSIONS_AUDITED, CONVERSIONS_REJECTED, RATES_FETCHED, TopicSpec

# One logger name for every part of the replay (orchestration, adapters, progress), as before it was split
# by floor, so log filters on it keep working.
LOGGER = "ces.projections.replay"
CHECKPOINT_TABLE = "replay_checkpoint"
MAX_WARNINGS = 10  # per phase and kind; the totals are in the final report
# Lower-case identifiers only: the name goes into DDL, `search_path` and file-less URLs unquoted.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ReplayError(RuntimeError):
    """The replay cannot start or go on; the message says why and what to do."""


class BatchRefused(Exception):
    """The target refused a batch as a whole (a constraint); nothing of it was written."""

    def __init__(self, detail: object) -> None:
        super().__init__(str(detail))
        self.detail = detail


class Partition(NamedTuple):
    """A topic partition (equal to, and hashed like, any other `(topic, partition)` named tuple)."""

    topic: str
    partition: int


Record = tuple[str, int, int, bytes]  # topic, partition, offset, value


class Prepared(NamedTuple):
    """A record the target turned into its own rows straight from its bytes, without decoding it (see
    `ReplayTarget.preparer`). The replay only carries it to `write`; `raw` decodes it again when a refused
    batch is retried one event at a time."""

    raw: bytes
    key: bytes  # what decides "the first one stands" within a batch (the request id for decisions)
    rows: tuple[bytes, ...]  # the target's encoding of the event's rows, opaque here


class PreparedBatch(NamedTuple):
    """A batch of one topic's records the target turned into its rows at once (see `ReplayTarget.batcher`):
    their keys are distinct, and distinct from every other event's `key()` in the same write, so where it
    stands among them does not matter. `raws` decode them again for a refused batch's one-by-one retry."""

    raws: list[bytes]
    keys: list[bytes]  # each record's, in order (the request ids for decisions)
    # The target's encoding of all their rows, opaque here: each text in pieces, so that no one buffer holds it.
    rows: tuple[tuple[bytes, ...], ...]


# What the replay hands to `ReplayTarget.write`.
Written = Event | Prepared | PreparedBatch


@dataclass(frozen=True)
class Phase:
    name: str
    # Each topic with the event types it carries (the first is assumed when a payload has no event_type).
    sources: tuple[tuple[TopicSpec, tuple[type[Event], ...]], ...]
    noun: str  # what one event is called in log lines


PHASES = {
    "rates": Phase("rates", ((RATES_FETCHED, (RateFetched, RateRevoked)),), "rate"),
    "audit": Phase(
        "audit",
        ((CONVERSIONS_AUDITED, (ConversionAudited,)), (CONVERSIONS_REJECTED, (ConversionRejected,))),
        "audit",
    ),
}
PROJECTIONS: dict[str, tuple[str, ...]] = {"rates": ("rates",), "audit": ("audit",), "all": ("rates", "audit")}


@dataclass(frozen=True)
class ReplayOptions:
    projection: str
    target_schema: str
    live_schema: str
    since: datetime | None = None
    restart: bool = False
    batch_size: int = 5000
    max_events: int | None = None  # stop after about this many events (tests: a deterministic interruption)
    jobs: int = 1  # processes for the audit phase, each a group of partitions (parallel.py)


@dataclass
class PhaseReport:
    name: str
    events: int = 0  # records read inside the cut
    applied: int = 0  # decoded and handed to the projector
    undecodable: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, reason) -> count
    refused: int = 0
    seconds: float = 0.0
    resumed_partitions: int = 0
    complete: bool = False


@dataclass
class ReplayReport:
    target_schema: str
    live_schema: str
    resumed: bool
    phases: list[PhaseReport] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    deferred: int = 0  # foreign keys and indexes dropped for the load of a fresh target
    restored: int = 0  # ... and added back at the end (by this run)
    restore_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return all(p.complete for p in self.phases)

    @property
    def events(self) -> int:
        return sum(p.events for p in self.phases)


def parse_since(value: str) -> datetime:
    """`YYYY-MM-DD` (midnight UTC) or an RFC 3339 timestamp with an offset."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"not a date or an RFC 3339 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {value!r} (add Z or +HH:MM)")
    return parsed.astimezone(UTC)


def check_schema_name(name: str) -> str:
    if not _SCHEMA_NAME.match(name) or name in {"public", "information_schema"} or name.startswith("pg_"):
        raise ReplayError(f"invalid target schema name {name!r}: use lower-case letters, digits and _")
    return name
