"""`ces replay`: rebuild the rate and audit projections from their topics into a fresh schema, resumably.

Rules:
- Isolation from live. The replay reads with its own consumer: manual partition assignment, no consumer
  group, no offset commits, so the live workers' groups never see it. It writes only to the target schema,
  through an engine whose connections have `search_path=<target>`, and refuses the live schema as target.
- Same code as live. Rows are written by `RateProjector.project` and `AuditStore.record`, so a replayed
  row is exactly what the live worker would have written for the same event.
- A consistent cut. The end offset of every partition is captured when the replay starts, audit topics
  before `rates-fetched`: an audit published before its topics' cut was decided on rates that were
  already on `rates-fetched`, so they are before the rates' cut too and every foreign key resolves.
  Events published after the cut are left for a later run (which resumes).
- Rates before audits: `conversion_audit` references `exchange_rate` by foreign key.
- Idempotent: both projectors skip what is already there (`ON CONFLICT DO NOTHING`, first decision
  stands), so a re-run, a duplicate event or a re-processed batch has no second effect.
- Checkpoints: `replay_checkpoint(topic, partition, next_offset)` lives in the target schema. A batch's
  checkpoint rows are written in the projector's own transaction (a `commit` listener on the replay's
  private engine adds them just before COMMIT), so rows and checkpoint commit together or not at all. A
  killed replay, re-run with the same target, resumes from the checkpoint; `--restart` starts over.
- Undecodable messages are counted per topic and reason, logged, and skipped; events the database
  refuses (a constraint) are retried one by one, and the refused ones counted and skipped. Events the
  rate projection refuses itself (implausible date, conflicting republication, revocation of an unknown
  rate: the live worker dead-letters them) are counted as refused and skipped the same way.
- Revocations (`RateRevoked` on `rates-fetched`) are applied in topic order like the rates they name.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.pool import NullPool

from ces.adapters.postgres import migrate
from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.verify import PROJECTION_TABLES, TableResult, quote_ident, verify
from ces.events.base import Event
from ces.events.conversions import ConversionAudited, ConversionRejected, Decision
from ces.events.rates import RateFetched, RateRevoked
from ces.events.registry import UndecodableEvent, decode
from ces.events.topics import CONVERSIONS_AUDITED, CONVERSIONS_REJECTED, RATES_FETCHED, TopicSpec
from ces.projections.rate_rows import RateEvent
from ces.settings import Settings

log = logging.getLogger(__name__)

CHECKPOINT_TABLE = "replay_checkpoint"
# Lower-case identifiers only: the name goes into DDL, `search_path` and file-less URLs unquoted.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MAX_WARNINGS = 10  # per phase and kind; the totals are in the final report


class ReplayError(RuntimeError):
    """The replay cannot start or go on; the message says why and what to do."""


# --- what each projection reads and how it writes ------------------------------------------------------


def _write_rates(engine: Engine, events: Sequence[Event], settings: Settings) -> int:
    # The live worker's skew, so a replay refuses exactly what the live projection refused.
    projector = RateProjector(engine, max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds))
    refused = projector.project(cast(Sequence[RateEvent], events)).refused
    for refusal in refused[:_MAX_WARNINGS]:
        log.warning("skipping a rate event the projection refuses: %s: %s", refusal.reason, refusal.detail)
    return len(refused)


def _write_audits(engine: Engine, events: Sequence[Event], settings: Settings) -> int:
    AuditStore(engine).record(cast(Sequence[Decision], events))
    return 0


@dataclass(frozen=True)
class Phase:
    name: str
    # Each topic with the event types it carries (the first is assumed when a payload has no event_type).
    sources: tuple[tuple[TopicSpec, tuple[type[Event], ...]], ...]
    write: Callable[[Engine, Sequence[Event], Settings], int]  # returns how many events it refused


PHASES = {
    "rates": Phase("rates", ((RATES_FETCHED, (RateFetched, RateRevoked)),), _write_rates),
    "audit": Phase(
        "audit",
        ((CONVERSIONS_AUDITED, (ConversionAudited,)), (CONVERSIONS_REJECTED, (ConversionRejected,))),
        _write_audits,
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

    @property
    def complete(self) -> bool:
        return all(p.complete for p in self.phases)

    @property
    def events(self) -> int:
        return sum(p.events for p in self.phases)


# --- arguments and schemas -------------------------------------------------------------------------------


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


def schema_url(database_url: str, schema: str) -> str:
    """The configured URL with `search_path` set to `schema` only (any other `options` are replaced)."""
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def resolve_live_schema(database_url: str) -> str:
    """The schema the configured URL's search_path resolves to: where the live worker writes."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar()
    finally:
        engine.dispose()
    if not schema:
        raise ReplayError("the database URL's search_path names no existing schema; pass --live-schema")
    return str(schema)


def schema_tables(conn: Connection, schema: str) -> set[str]:
    return set(
        conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
        ).scalars()
    )


def prepare_target(admin: Engine, database_url: str, target: str, *, restart: bool) -> bool:
    """Create (or adopt, or with `restart` recreate) the target schema; return True when resuming.

    The checkpoint table is created before the migrations, in the schema's first transaction: it marks
    the schema as a replay target, so a later `--restart` never drops a schema CES replay did not make.
    """
    with admin.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": target}).first()
        tables = schema_tables(conn, target) if exists else set()
        if tables and CHECKPOINT_TABLE not in tables:
            raise ReplayError(
                f"schema {target!r} exists and was not made by `ces replay` (no {CHECKPOINT_TABLE} table); "
                "choose another --target-schema or drop it yourself"
            )
        if exists and restart:
            log.info("--restart: dropping schema %s", target)
            conn.execute(text(f"DROP SCHEMA {quote_ident(target)} CASCADE"))
            exists, tables = None, set()
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(target)}"))
        create_checkpoint_table(conn, target)
    migrate.upgrade(database_url, schema=target)
    return CHECKPOINT_TABLE in tables


def create_checkpoint_table(conn: Connection, schema: str) -> None:
    # Not a migration: it belongs to replay targets only and must never appear in a live schema.
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(schema)}.{CHECKPOINT_TABLE} ("
            "topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (topic, partition))"
        )
    )


@contextmanager
def exclusive(admin: Engine, target: str) -> Iterator[None]:
    """One replay per target at a time: a session advisory lock, released when the session ends (even on
    SIGKILL, when the server notices the connection is gone)."""
    with admin.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": f"ces-replay:{target}"}).scalar()
        conn.commit()  # the lock is session-level; do not sit idle in a transaction meanwhile
        if not got:
            raise ReplayError(f"another `ces replay` into {target!r} is running")
        yield


# --- checkpoints -------------------------------------------------------------------------------------------


class Checkpoints:
    """`replay_checkpoint` in the target schema: per partition, the offset to read next.

    `arm(offsets)` before calling a projector: the next COMMIT on the replay's engine carries the rows
    (the `commit` event fires before the COMMIT is sent, on the same DBAPI connection). If no projector
    transaction carried them (nothing decodable in the batch), `settle` writes them on their own; if the
    projector failed, `disarm` drops them with its rolled-back transaction.
    """

    def __init__(self, engine: Engine, schema: str) -> None:
        self.engine = engine
        self.table = f"{quote_ident(schema)}.{CHECKPOINT_TABLE}"
        self._armed: dict[TopicPartition, int] | None = None
        event.listen(engine, "commit", self._on_commit)

    def load(self) -> dict[TopicPartition, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT topic, partition, next_offset FROM {self.table}")).all()
        return {TopicPartition(topic, partition): int(offset) for topic, partition, offset in rows}

    def arm(self, offsets: dict[TopicPartition, int]) -> None:
        self._armed = dict(offsets)

    def disarm(self) -> None:
        self._armed = None

    def settle(self) -> None:
        if self._armed:
            with self.engine.begin():
                pass  # an empty transaction whose COMMIT carries the armed rows
        self._armed = None

    def _on_commit(self, conn: Connection) -> None:
        armed, self._armed = self._armed, None
        if not armed:
            return
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(
                f"INSERT INTO {self.table} (topic, partition, next_offset) VALUES (%s, %s, %s) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
                [(tp.topic, tp.partition, offset) for tp, offset in armed.items()],
            )
        finally:
            cursor.close()


# --- progress ------------------------------------------------------------------------------------------------


class ProgressSink(Protocol):
    def begin(self, phase: str, total: int) -> None: ...

    def advance(self, phase: str, done: int) -> None: ...

    def end(self, phase: str) -> None: ...


class _EventsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "- events/s", style="progress.data.speed")


class RichProgress:
    """A bar per phase with events/s and ETA, for a terminal."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description:<6}"),
            BarColumn(),
            MofNCompleteColumn(),
            _EventsPerSecond(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def begin(self, phase: str, total: int) -> None:
        self.tasks[phase] = self.progress.add_task(phase, total=total)

    def advance(self, phase: str, done: int) -> None:
        self.progress.update(self.tasks[phase], advance=done)

    def end(self, phase: str) -> None:
        task = self.tasks[phase]
        self.progress.update(task, completed=self.progress.tasks[task].total)


class LogProgress:
    """Plain log lines about every `interval` seconds, for logs and pipes."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.state: dict[str, tuple[int, int, float, float]] = {}  # total, done, started, last logged

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def begin(self, phase: str, total: int) -> None:
        now = time.monotonic()
        self.state[phase] = (total, 0, now, now)
        log.info("replay %s: %s events to read", phase, f"{total:,}")

    def advance(self, phase: str, done: int) -> None:
        total, so_far, started, last = self.state[phase]
        so_far += done
        now = time.monotonic()
        if now - last >= self.interval:
            self._line(phase, total, so_far, started, now)
            last = now
        self.state[phase] = (total, so_far, started, last)

    def end(self, phase: str) -> None:
        total, so_far, started, _ = self.state[phase]
        self._line(phase, total, so_far, started, time.monotonic())

    @staticmethod
    def _line(phase: str, total: int, done: int, started: float, now: float) -> None:
        rate = done / max(now - started, 1e-9)
        eta = f"{(total - done) / rate:,.0f}s" if rate and done < total else "-"
        percent = 100.0 * done / total if total else 100.0
        log.info(
            "replay %s: %s/%s events (%.1f%%), %s events/s, ETA %s",
            phase,
            f"{done:,}",
            f"{total:,}",
            percent,
            f"{rate:,.0f}",
            eta,
        )


# --- the replay ----------------------------------------------------------------------------------------------


Record = tuple[str, int, int, bytes]  # topic, partition, offset, value


def _partition(described: dict[str, Any]) -> int:
    return int(described["partition"])


class Replay:
    def __init__(self, settings: Settings, options: ReplayOptions, progress: ProgressSink) -> None:
        self.settings = settings
        self.options = options
        self.progress = progress
        self.prefix = settings.topic_prefix
        self.read = 0

    def run(self) -> ReplayReport:
        target = check_schema_name(self.options.target_schema)
        # Both the schema compared with and the one the workers write to (they differ with --live-schema).
        if target in {self.options.live_schema, resolve_live_schema(self.settings.database_url)}:
            raise ReplayError(f"the target schema {target!r} is the live schema; replay into a fresh one")
        if self.options.projection not in PROJECTIONS:
            raise ReplayError(f"unknown projection {self.options.projection!r}")
        started = time.monotonic()
        admin = create_engine(self.settings.database_url, poolclass=NullPool)
        try:
            with exclusive(admin, target):
                resumed = prepare_target(admin, self.settings.database_url, target, restart=self.options.restart)
                engine = create_engine(schema_url(self.settings.database_url, target), pool_size=2, max_overflow=0)
                try:
                    if self.options.projection == "audit":
                        self._require_rates(engine)
                    report = ReplayReport(target, self.options.live_schema, resumed)
                    asyncio.run(self._replay(engine, Checkpoints(engine, target), report))
                    report.rows = self._count_rows(engine)
                finally:
                    engine.dispose()
        finally:
            admin.dispose()
        report.seconds = time.monotonic() - started
        return report

    @staticmethod
    def _require_rates(engine: Engine) -> None:
        with engine.connect() as conn:
            if conn.execute(text("SELECT NOT EXISTS (SELECT 1 FROM exchange_rate)")).scalar():
                raise ReplayError(
                    "the target has no exchange_rate rows, and audit rows reference them: "
                    "replay --projection rates (or all) into it first"
                )

    def _count_rows(self, engine: Engine) -> dict[str, int]:
        with engine.connect() as conn:
            return {
                t.name: int(conn.execute(text(f"SELECT count(*) FROM {quote_ident(t.name)}")).scalar_one())
                for t in PROJECTION_TABLES[self.options.projection]
            }

    async def _replay(self, engine: Engine, checkpoints: Checkpoints, report: ReplayReport) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,  # no group: nothing joined, nothing committed, live groups untouched
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="ces-replay",
            max_poll_records=self.options.batch_size,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        try:
            phases = [PHASES[name] for name in PROJECTIONS[self.options.projection]]
            partitions = {phase.name: await self._partitions(phase) for phase in phases}
            ends: dict[TopicPartition, int] = {}
            for phase in reversed(phases):  # the cut: audit topics first, then rates (see the module doc)
                ends.update(await consumer.end_offsets(partitions[phase.name]))
            saved = await asyncio.to_thread(checkpoints.load)
            for phase in phases:
                phase_report = PhaseReport(phase.name)
                report.phases.append(phase_report)
                await self._phase(
                    consumer, engine, checkpoints, phase, partitions[phase.name], ends, saved, phase_report
                )
                if not phase_report.complete:
                    break  # --max-events: later phases must not run ahead of an unfinished one
        finally:
            await consumer.stop()

    async def _partitions(self, phase: Phase) -> list[TopicPartition]:
        names = [self.prefix + spec.name for spec, _ in phase.sources]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, client_id="ces-replay")
        await admin.start()
        try:
            described = await admin.describe_topics(names)
        finally:
            await admin.close()
        found = {t["topic"]: t for t in described}
        tps: list[TopicPartition] = []
        for name in names:
            topic = found.get(name)
            # An empty partition list would replay nothing and look like success: refuse it.
            if topic is None or topic["error_code"] or not topic["partitions"]:
                raise ReplayError(f"topic {name!r} does not exist (CES_TOPIC_PREFIX={self.prefix!r})")
            tps.extend(TopicPartition(name, p["partition"]) for p in sorted(topic["partitions"], key=_partition))
        return tps

    def _since_applies(self, phase: Phase) -> bool:
        # With `all`, rates are read in full whatever --since says: audits reference rates of any age.
        return self.options.since is not None and (phase.name == "audit" or self.options.projection == "rates")

    async def _starts(
        self,
        consumer: AIOKafkaConsumer,
        phase: Phase,
        tps: list[TopicPartition],
        ends: dict[TopicPartition, int],
        saved: dict[TopicPartition, int],
        report: PhaseReport,
    ) -> dict[TopicPartition, int]:
        begins = await consumer.beginning_offsets(tps)
        by_time: dict[TopicPartition, Any] = {}
        if self._since_applies(phase) and self.options.since is not None:
            since_ms = int(self.options.since.timestamp() * 1000)
            by_time = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        starts = {}
        for tp in tps:
            if tp in saved:
                start = saved[tp]
                report.resumed_partitions += 1
                if start > ends[tp]:
                    raise ReplayError(
                        f"checkpoint of {tp.topic}[{tp.partition}] is past the partition's end ({start} > {ends[tp]}): "
                        "was the topic recreated? re-run with --restart"
                    )
                if start < begins[tp]:
                    log.warning(
                        "%s[%d]: offsets %d..%d were deleted by retention since the checkpoint; they are lost",
                        tp.topic,
                        tp.partition,
                        start,
                        begins[tp] - 1,
                    )
            elif by_time:
                found = by_time.get(tp)
                start = found.offset if found is not None else ends[tp]
            else:
                start = begins[tp]
            starts[tp] = max(start, begins[tp])
        return starts

    async def _phase(
        self,
        consumer: AIOKafkaConsumer,
        engine: Engine,
        checkpoints: Checkpoints,
        phase: Phase,
        tps: list[TopicPartition],
        ends: dict[TopicPartition, int],
        saved: dict[TopicPartition, int],
        report: PhaseReport,
    ) -> None:
        started = time.monotonic()
        expected = {self.prefix + spec.name: cls for spec, cls in phase.sources}
        position = await self._starts(consumer, phase, tps, ends, saved, report)
        first_time = {tp: offset for tp, offset in position.items() if tp not in saved}
        if first_time:
            # Record where each partition starts (what --since decided), so a re-run resumes from exactly
            # here whatever its own options say.
            checkpoints.arm(first_time)
            await asyncio.to_thread(checkpoints.settle)
        pending = [tp for tp in tps if position[tp] < ends[tp]]
        self.progress.begin(phase.name, sum(ends[tp] - position[tp] for tp in pending))
        consumer.assign(pending)  # replaces the previous phase's assignment
        for tp in pending:
            consumer.seek(tp, position[tp])
        budget = self.options.max_events
        # One batch in flight: while a worker thread writes batch N (psycopg2 releases the GIL while the
        # server works), this loop fetches and decodes batch N+1. Writes stay strictly sequential, so
        # checkpoints commit in offset order.
        writing: asyncio.Future[None] | None = None
        writing_offsets = 0
        try:
            while pending:
                limit = self.options.batch_size if budget is None else min(self.options.batch_size, budget - self.read)
                if limit <= 0:
                    break
                batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=limit)
                records: list[Record] = [
                    (tp.topic, tp.partition, r.offset, r.value or b"")
                    for tp, recs in batches.items()
                    for r in recs
                    if r.offset < ends[tp]  # published after the cut: a later run's
                ]
                advanced: dict[TopicPartition, int] = {}
                moved = 0
                for tp in list(pending):
                    # The position, not the last record's offset + 1: it also steps over offsets that hold
                    # no record for us (transaction markers), and it is clamped to the cut.
                    nxt = min(await consumer.position(tp), ends[tp])
                    if nxt != position[tp]:
                        advanced[tp] = nxt
                        moved += nxt - position[tp]
                        position[tp] = nxt
                    if nxt >= ends[tp]:
                        pending.remove(tp)
                        consumer.pause(tp)
                if not advanced:
                    continue
                events = self._decode(records, expected, report)
                self.read += len(records)
                if writing is not None:
                    await writing
                    self.progress.advance(phase.name, writing_offsets)
                # Submitted now (not when this loop next yields, as a task wrapping to_thread would be).
                writing = asyncio.get_running_loop().run_in_executor(
                    None, functools.partial(self._write, engine, checkpoints, phase, events, advanced, report)
                )
                writing_offsets = moved
            if writing is not None:
                await writing
                self.progress.advance(phase.name, writing_offsets)
        finally:
            if writing is not None and not writing.done():
                await asyncio.wait([writing])  # leaving early (an error, Ctrl-C): let the batch finish
        report.complete = not pending
        report.seconds = time.monotonic() - started
        self.progress.end(phase.name)

    @staticmethod
    def _decode(
        records: list[Record], expected: dict[str, tuple[type[Event], ...]], report: PhaseReport
    ) -> list[Event]:
        events: list[Event] = []
        for topic, partition, offset, value in records:
            try:
                events.append(decode(value, expected=expected[topic]))
            except UndecodableEvent as exc:
                if sum(report.undecodable.values()) < _MAX_WARNINGS:
                    log.warning("skipping undecodable message %s[%d]@%d: %s", topic, partition, offset, exc)
                report.undecodable[(topic, exc.reason)] += 1
        report.events += len(records)
        report.applied += len(events)
        return events

    def _write(
        self,
        engine: Engine,
        checkpoints: Checkpoints,
        phase: Phase,
        events: list[Event],
        advanced: dict[TopicPartition, int],
        report: PhaseReport,
    ) -> None:
        """Blocking: the batch's rows and its checkpoint, in one transaction when the projector opens one."""
        checkpoints.arm(advanced)
        try:
            if events:
                report.refused += phase.write(engine, events, self.settings)
        except (IntegrityError, DataError) as exc:
            # Refused as a batch (a constraint): find the culprits one by one. The checkpoint must not
            # ride on the first single-event transaction, or a kill here would skip the rest.
            checkpoints.disarm()
            log.warning(
                "the database refused a batch of %d %s events (%s); retrying one by one",
                len(events),
                phase.name,
                exc.orig,
            )
            self._one_by_one(engine, phase, events, report)
            checkpoints.arm(advanced)  # the whole batch is applied now: `settle` writes it on its own
        except BaseException:
            checkpoints.disarm()
            raise
        checkpoints.settle()

    def _one_by_one(self, engine: Engine, phase: Phase, events: list[Event], report: PhaseReport) -> None:
        for item in events:
            try:
                report.refused += phase.write(engine, [item], self.settings)
            except (IntegrityError, DataError) as exc:
                if report.refused < _MAX_WARNINGS:
                    log.warning("skipping %s %s refused by the database: %s", item.event_type, item.event_id, exc.orig)
                report.refused += 1


def report_lines(report: ReplayReport, topic_prefix: str) -> list[str]:
    """The end-of-run summary, one fact per line."""
    how = "resumed from its checkpoint" if report.resumed else "fresh"
    lines = [
        f"replay into schema {report.target_schema!r} ({how}; live schema {report.live_schema!r}; "
        f"topic prefix {topic_prefix!r})"
    ]
    for p in report.phases:
        rate = p.events / p.seconds if p.seconds else 0.0
        state = "" if p.complete else " (stopped early: re-run to resume)"
        lines.append(
            f"  {p.name}: {p.events:,} events read, {p.applied:,} applied, "
            f"{sum(p.undecodable.values()):,} undecodable, {p.refused:,} refused, "
            f"{p.seconds:.1f}s ({rate:,.0f} events/s){state}"
        )
    skipped = Counter[tuple[str, str]]()
    for p in report.phases:
        skipped.update(p.undecodable)
    if skipped:
        detail = "; ".join(f"{topic} {reason}: {n}" for (topic, reason), n in sorted(skipped.items()))
        lines.append(f"  undecodable messages skipped: {sum(skipped.values())} ({detail})")
    if report.rows:
        lines.append("  rows in target: " + ", ".join(f"{t} {n:,}" for t, n in report.rows.items()))
    rate = report.events / report.seconds if report.seconds else 0.0
    verdict = "complete" if report.complete else "INCOMPLETE"
    lines.append(f"replay {verdict} in {report.seconds:.1f}s: {report.events:,} events ({rate:,.0f} events/s)")
    return lines


# --- verify and swap -------------------------------------------------------------------------------------------


def verify_target(
    database_url: str, live_schema: str, target_schema: str, projection: str, *, max_diffs: int
) -> list[TableResult]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET TRANSACTION READ ONLY"))  # verifying can never write either schema
            return verify(conn, live_schema, target_schema, PROJECTION_TABLES[projection], max_diffs=max_diffs)
    finally:
        engine.dispose()


class SwapRefused(ReplayError):
    def __init__(self, message: str, results: list[TableResult] | None = None) -> None:
        super().__init__(message)
        self.results = results or []


def swap(database_url: str, live_schema: str, target_schema: str, *, lock_timeout_s: int = 30) -> str:
    """Promote the target: in one transaction, rename live to `<live>_replaced_<UTC time>` and the target to
    the live name. Returns the old schema's new name.

    Under SHARE locks on the live tables (writers wait, readers go on) the target is verified against
    live once more; any difference refuses the swap. Stop the live writers first: a write waiting on the
    lock would, once released, land in the renamed old schema (its statement already resolved the table).
    """
    check_schema_name(target_schema)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    replaced = f"{live_schema[: 63 - len(stamp) - 10]}_replaced_{stamp}"
    engine = create_engine(database_url, poolclass=NullPool)
    tables = PROJECTION_TABLES["all"]
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_s)}s'"))
            live_only = schema_tables(conn, live_schema) - schema_tables(conn, target_schema)
            if live_only:
                raise SwapRefused(f"live schema has tables the replay does not rebuild: {', '.join(sorted(live_only))}")
            names = ", ".join(f"{quote_ident(live_schema)}.{quote_ident(t.name)}" for t in tables)
            conn.execute(text(f"LOCK TABLE {names} IN SHARE MODE"))
            results = verify(conn, live_schema, target_schema, tables, max_diffs=5)
            if not all(r.ok for r in results):
                raise SwapRefused("the target differs from live: not swapped", results)
            conn.execute(text(f"DROP TABLE {quote_ident(target_schema)}.{CHECKPOINT_TABLE}"))
            conn.execute(text(f"ALTER SCHEMA {quote_ident(live_schema)} RENAME TO {quote_ident(replaced)}"))
            conn.execute(text(f"ALTER SCHEMA {quote_ident(target_schema)} RENAME TO {quote_ident(live_schema)}"))
    finally:
        engine.dispose()
    return replaced
