"""The replay's `ReplayTarget` on PostgreSQL: a fresh schema (created, migrated, locked), its checkpoints
table, and batches written by the live path's own projectors with their checkpoint in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import cast

import psycopg2
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.pool import NullPool

from ces.adapters.postgres.audit_rows import audited_batch, audited_rows
from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.bulk_audit import copy_decisions
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.replay_constraints import defer, restore
from ces.adapters.postgres.verify import PROJECTION_TABLES, quote_ident
from ces.domain.rates import DEFAULT_MAX_CLOCK_SKEW
from ces.events.base import Event
from ces.events.conversions import ConversionAudited, Decision
from ces.projections.rate_rows import RateEvent, Refusal
from ces.projections.replay.model import (
    CHECKPOINT_TABLE,
    LOGGER,
    BatchRefused,
    Partition,
    Prepared,
    PreparedBatch,
    ReplayError,
    Written,
)
from ces.projections.replay.ports import Batcher, Preparer

log = logging.getLogger(LOGGER)

# Writes one phase's batch in one transaction on `engine`; returns what the projection refuses itself. Only
# a writer that has preparers (`bulk_preparers`) is given `Prepared` records and `PreparedBatch`es.
Writer = Callable[[Engine, Sequence[Written]], list[Refusal]]


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


def create_checkpoint_table(conn: Connection, schema: str) -> None:
    # Not a migration: it belongs to replay targets only and must never appear in a live schema.
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(schema)}.{CHECKPOINT_TABLE} ("
            "topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL, "
            "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (topic, partition))"
        )
    )


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
        self._armed: dict[Partition, int] | None = None
        event.listen(engine, "commit", self._on_commit)

    def load(self) -> dict[Partition, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT topic, partition, next_offset FROM {self.table}")).all()
        return {Partition(topic, partition): int(offset) for topic, partition, offset in rows}

    def arm(self, offsets: Mapping[Partition, int]) -> None:
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


def live_writers(max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW) -> dict[str, Writer]:
    """Each phase's writer: the live worker's own projectors, so a replayed row is exactly a live one."""

    def rates(engine: Engine, events: Sequence[Written]) -> list[Refusal]:
        # The live worker's skew, so a replay refuses exactly what the live projection refused.
        return RateProjector(engine, max_clock_skew=max_clock_skew).project(cast(Sequence[RateEvent], events)).refused

    def audit(engine: Engine, events: Sequence[Written]) -> list[Refusal]:
        AuditStore(engine).record(cast(Sequence[Decision], events))
        return []

    return {"rates": rates, "audit": audit}


def bulk_writers(max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW) -> dict[str, Writer]:
    """The replay's default: audits by COPY (`bulk_audit.py`, the same rows as `AuditStore.record`, proven by
    `--verify` and tests/integration/test_replay_bulk.py); rates by the live projector, whose refusal rules
    (plausibility, conflicting republications, revocations) are not worth a second implementation."""

    def audit(engine: Engine, events: Sequence[Written]) -> list[Refusal]:
        copy_decisions(engine, cast(Sequence[Decision | Prepared | PreparedBatch], events))
        return []

    return {**live_writers(max_clock_skew), "audit": audit}


def bulk_preparers() -> dict[tuple[str, type[Event]], Preparer]:
    """What `bulk_writers` can take straight from a record's bytes, per (phase, event class): an audit's COPY
    lines (`audit_rows.py`). Rates are few, and their projector's rules need the decoded event."""
    return {("audit", ConversionAudited): audited_rows}


def bulk_batchers() -> dict[tuple[str, type[Event]], Batcher]:
    """`bulk_preparers` for a fetched batch's records of a topic at once (`audit_rows.audited_batch`)."""
    return {("audit", ConversionAudited): audited_batch}


class PostgresReplayTarget:
    """A schema of the configured database, written through an engine whose connections have
    `search_path=<schema>` and nothing else. Engines connect lazily; `close` disposes them."""

    def __init__(
        self,
        database_url: str,
        schema: str,
        *,
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
        writers: Mapping[str, Writer] | None = None,
        preparers: Mapping[tuple[str, type[Event]], Preparer] | None = None,
        batchers: Mapping[tuple[str, type[Event]], Batcher] | None = None,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.writers = dict(writers) if writers is not None else live_writers(max_clock_skew)
        self.preparers = dict(preparers or {})  # only for the writers they were written for
        self.batchers = dict(batchers or {})  # likewise
        self.admin = create_engine(database_url, poolclass=NullPool)
        self.engine = create_engine(schema_url(database_url, schema), pool_size=2, max_overflow=0)
        self.checkpoints = Checkpoints(self.engine, schema)

    def live_schemas(self) -> set[str]:
        return {resolve_live_schema(self.database_url)}

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One replay per target at a time: a session advisory lock, released when the session ends (even on
        SIGKILL, when the server notices the connection is gone)."""
        with self.admin.connect() as conn:
            key = f"ces-replay:{self.schema}"
            got = conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": key}).scalar()
            conn.commit()  # the lock is session-level; do not sit idle in a transaction meanwhile
            if not got:
                raise ReplayError(f"another `ces replay` into {self.schema!r} is running")
            yield

    def prepare(self, *, restart: bool) -> bool:
        """Create (or adopt, or with `restart` recreate) the target schema; return True when resuming.

        The checkpoint table is created before the migrations, in the schema's first transaction: it marks
        the schema as a replay target, so a later `--restart` never drops a schema CES replay did not make.
        """
        target = self.schema
        with self.admin.begin() as conn:
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
        # Imported here: alembic is about a third of this module's imports, and the `--jobs` worker processes,
        # which build a target too, never migrate (`build_replay` imports it before the heap is settled).
        from ces.adapters.postgres import migrate

        migrate.upgrade(self.database_url, schema=target)
        return CHECKPOINT_TABLE in tables

    def defer_constraints(self) -> int:
        return defer(self.engine)

    def restore_constraints(self) -> int:
        restored = restore(self.engine)
        if not restored:
            # The bulk writes commit without waiting for their WAL flush (bulk_audit.py): a transaction that
            # writes (an xid) and commits synchronously flushes the WAL up to it, so the replay reports complete
            # only what a database crash cannot take back. Restoring commits DDL, which does the same.
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_current_xact_id()"))
        return restored

    def has_rates(self) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM exchange_rate)")).scalar())

    def load_checkpoints(self) -> dict[Partition, int]:
        return self.checkpoints.load()

    def save_checkpoints(self, offsets: Mapping[Partition, int]) -> None:
        self.checkpoints.arm(offsets)
        self.checkpoints.settle()

    def preparer(self, phase: str, carried: tuple[type[Event], ...]) -> Preparer | None:
        # A record a preparer takes names its class in `event_type`, so it is one the topic carries.
        found = [self.preparers[phase, cls] for cls in carried if (phase, cls) in self.preparers]
        if len(found) > 1:
            return None  # not needed so far: one class per topic has a byte path
        return found[0] if found else None

    def batcher(self, phase: str, carried: tuple[type[Event], ...]) -> Batcher | None:
        found = [self.batchers[phase, cls] for cls in carried if (phase, cls) in self.batchers]
        return found[0] if len(found) == 1 else None

    def write(self, phase: str, events: Sequence[Written], offsets: Mapping[Partition, int] | None) -> list[Refusal]:
        """Blocking: the batch's rows and its checkpoint, in one transaction when the projector opens one."""
        if offsets is not None:
            self.checkpoints.arm(offsets)
        try:
            refusals = self.writers[phase](self.engine, events) if events else []
        except (IntegrityError, DataError) as exc:
            self.checkpoints.disarm()
            raise BatchRefused(exc.orig) from exc
        except (psycopg2.IntegrityError, psycopg2.DataError) as exc:  # raised unwrapped by a raw cursor (COPY)
            self.checkpoints.disarm()
            raise BatchRefused(exc) from exc
        except BaseException:
            self.checkpoints.disarm()
            raise
        self.checkpoints.settle()
        return refusals

    def count_rows(self, projection: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                t.name: int(conn.execute(text(f"SELECT count(*) FROM {quote_ident(t.name)}")).scalar_one())
                for t in PROJECTION_TABLES[projection]
            }

    def close(self) -> None:
        self.engine.dispose()
        self.admin.dispose()
