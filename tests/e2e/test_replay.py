"""`ces replay` end to end: a real worker fills an isolated live schema from real topics, then the replay, run
as a user runs it (`python -m ces replay ...` with the same environment), rebuilds the tables into fresh
schemas, verifies them, survives SIGKILL, and swaps. The worker keeps running throughout."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, ProgrammingError

from ces.adapters.kafka.connection import kafka_kwargs
from ces.adapters.postgres import migrate
from ces.adapters.postgres.verify import PROJECTION_TABLES, pin_session, summarize
from ces.bootstrap.worker import READY_LINE
from ces.events.base import utc_now
from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote
from ces.settings import Settings
from tests.e2e.conftest import RunningProcess, free_port, in_schema, poll
from tests.support import produce, redis_admin_dsn, schema_catalog

RATES = {"USD": "1.0892", "JPY": "161.87", "GBP": "0.85713", "KWD": "0.33421", "NGN": "1745.1234"}
MINOR = {"EUR": 2, "USD": 2, "JPY": 0, "GBP": 2, "KWD": 3, "NGN": 2}
TABLES = PROJECTION_TABLES["all"]  # the rate projection owns exchange_rate_revocation too
BOOKKEEPING = ("replay_checkpoint", "replay_deferred")  # a replay target's own tables
CONVERSIONS = 10_000  # enough audit batches for a SIGKILL to land in the middle of a replay
REJECTED = {"no_rate": ("USD", "CHF", "1.00"), "unsupported_pair": ("USD", "USD", "1.00")}


@dataclass
class Deployment:
    """One live CES (worker, isolated schema, topic prefix, Redis prefix) shared by this module's tests."""

    settings: Settings
    env: dict[str, str]
    schema: str
    engine: Engine
    admin: Engine  # no search_path: for schema-qualified SQL across schemas
    prefix: str
    app_id: str
    duplicate_request_id: str

    def replay(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ces", "replay", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def counts(self, schema: str) -> dict[str, int]:
        with self.admin.connect() as conn:
            return {
                t.name: int(conn.execute(text(f'SELECT count(*) FROM "{schema}".{t.name}')).scalar_one())
                for t in TABLES
            }

    def summaries(self, schema: str) -> dict[str, object]:
        with self.admin.begin() as conn:
            pin_session(conn)
            return {t.name: summarize(conn, schema, t) for t in TABLES}

    def topic_records(self, name: str) -> int:
        async def count() -> int:
            consumer = AIOKafkaConsumer(**kafka_kwargs(self.settings.kafka_bootstrap))
            await consumer.start()
            try:
                tps = [TopicPartition(self.prefix + name, p) for p in range(self.settings.topic_partitions)]
                ends = await consumer.end_offsets(tps)
                begins = await consumer.beginning_offsets(tps)
                return sum(ends[tp] - begins[tp] for tp in tps)
            finally:
                await consumer.stop()

        return asyncio.run(count())

    def checkpoint_progress(self, schema: str, topic: str = "%") -> int:
        """Offsets replayed so far according to the checkpoint (every topic starts at offset 0 here)."""
        try:
            with self.admin.connect() as conn:
                return int(
                    conn.execute(
                        text(
                            f'SELECT coalesce(sum(next_offset), 0) FROM "{schema}".replay_checkpoint '
                            "WHERE topic LIKE :t"
                        ),
                        {"t": self.prefix + topic},
                    ).scalar_one()
                )
        except ProgrammingError:  # the schema or its checkpoint table does not exist yet
            return 0

    def copy_live(self, schema: str) -> None:
        """A plain copy of the live tables (no constraints, no insert-only triggers): something to tamper."""
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            for t in TABLES:
                conn.execute(text(f'CREATE TABLE "{schema}".{t.name} AS SELECT * FROM "{self.schema}".{t.name}'))


def conversion(base: str, target: str, amount: str, request_id: str | None = None) -> tuple[bytes, bytes]:
    rid = request_id or str(uuid.uuid4())
    body = {"request_id": rid, "base_currency": base, "target_currency": target, "amount": amount}
    return rid.encode(), json.dumps(body).encode()


def drop_schemas(admin: Engine, *patterns: str) -> None:
    with admin.begin() as conn:
        for pattern in patterns:
            for (name,) in conn.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": pattern}):
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    settings = Settings()
    unique = uuid.uuid4().hex[:10]
    schema = f"e2e_replay_{unique}"
    migrate.upgrade(settings.migration_database_dsn, schema=schema)
    url = make_url(settings.database_dsn).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    prefix, app_id, redis_prefix = f"e2e-replay-{unique}-", f"e2e-replay-{unique}", f"e2e-replay-{unique}:"
    env = {
        **os.environ,
        "CES_APP_ID": app_id,
        "CES_TOPIC_PREFIX": prefix,
        "CES_REDIS_KEY_PREFIX": redis_prefix,
        "CES_DATABASE_URL": url_text,
        "CES_MIGRATION_DATABASE_URL": in_schema(settings.migration_database_url, schema),
        "CES_PROVIDER_URL": "http://127.0.0.1:9",  # no live fetches: rates are seeded below
        "CES_FETCH_MAX_ATTEMPTS": "1",
        "CES_WORKER_WEB_PORT": str(free_port()),
        "CES_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    engine = create_engine(url_text)
    admin = create_engine(settings.migration_database_dsn)
    log = tmp_path_factory.mktemp("replay") / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ces", "worker"], stdout=out, stderr=subprocess.STDOUT, env={**env}
        )
    worker = RunningProcess(proc, Path(log))
    try:
        worker.wait_for_output(READY_LINE)
        deployment = Deployment(settings, env, schema, engine, admin, prefix, app_id, str(uuid.uuid4()))
        fill(deployment)
        yield deployment
    finally:
        worker.terminate()
        engine.dispose()
        drop_schemas(admin, schema)
        admin.dispose()
        asyncio.run(delete_topics(settings, prefix))
        client = redis.Redis.from_url(redis_admin_dsn(settings))
        keys = list(client.scan_iter(f"{redis_prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


async def delete_topics(settings: Settings, prefix: str) -> None:
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def fill(d: Deployment) -> None:
    """Rates, then conversions (direct, inverse, cross, rejected, one request id sent twice in separate
    batches, so its result is on the topic twice), through the real worker; plus one undecodable message on
    each replayed topic the worker writes or reads."""
    bootstrap = d.settings.kafka_bootstrap
    published = utc_now() - timedelta(hours=1)
    rates = quote_events(
        ProviderQuote("ecb", "EUR", published, {code: Decimal(value) for code, value in RATES.items()}),
        uuid.uuid4(),
        published,
    )
    messages: list[tuple[bytes | None, bytes]] = [(e.key(), e.to_json()) for e in rates]
    messages += [(rates[0].key(), rates[0].to_json()), (None, b"{not json")]  # a duplicate and a poison message
    asyncio.run(produce(bootstrap, d.prefix + "rates-fetched", messages))
    poll(lambda: d.counts(d.schema)["exchange_rate"] == len(RATES), timeout=90, what="rates projected")

    rng = random.Random(11)
    codes = ["EUR", *RATES]
    requests = []
    for _ in range(CONVERSIONS):
        base, target = rng.sample(codes, 2)
        requests.append(conversion(base, target, str(Decimal(rng.randint(1, 10**7)).scaleb(-MINOR[base]))))
    requests += [conversion(*args) for args in REJECTED.values()]
    requests.append(conversion("GBP", "JPY", "250.00", d.duplicate_request_id))
    asyncio.run(produce(bootstrap, d.prefix + "conversion-requests", list(requests)))
    total = len(requests)
    poll(lambda: d.counts(d.schema)["conversion_request"] == total, timeout=180, what="conversions decided")
    # The retry, in a later batch: the worker re-publishes the stored decision, identical.
    asyncio.run(produce(bootstrap, d.prefix + "conversion-requests", [requests[-1]]))
    poll(lambda: d.topic_records("conversions-audited") == CONVERSIONS + 2, timeout=60, what="duplicate re-published")
    # Something that did not come from CES on a replayed topic: the replay must skip it and say so.
    asyncio.run(produce(bootstrap, d.prefix + "conversions-audited", [(None, b"\xff not an event")]))
    # The worker commits the offsets of finished batches together (every 0.5 s while busy, at once when idle),
    # a little after their results are visible: wait until it has committed all it consumed, so the tests
    # can hold the live groups' offsets still.
    poll(lambda: live_offsets_settled(d), timeout=60, what="live consumer offsets committed")


def live_offsets_settled(d: Deployment) -> bool:
    groups = live_group_offsets(d)
    return all(
        sum(committed.offset for committed in groups[f"{d.app_id}-{group}"].values()) == d.topic_records(topic)
        for group, topic in (("rates", "rates-fetched"), ("conversions", "conversion-requests"))
    )


@pytest.fixture
def target(deployment: Deployment) -> Iterator[str]:
    name = f"replay_{uuid.uuid4().hex[:10]}"
    yield name
    drop_schemas(deployment.admin, name, f"{name}_%")


@pytest.fixture
def scratch(deployment: Deployment) -> Iterator[str]:
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    yield name
    drop_schemas(deployment.admin, name, f"{name}_replaced_%")


def live_group_offsets(d: Deployment) -> dict[str, dict[TopicPartition, OffsetAndMetadata]]:
    async def read() -> dict[str, dict[TopicPartition, OffsetAndMetadata]]:
        admin = AIOKafkaAdminClient(**kafka_kwargs(d.settings.kafka_bootstrap))
        await admin.start()
        try:
            return {
                group: await admin.list_consumer_group_offsets(group)
                for group in (f"{d.app_id}-rates", f"{d.app_id}-conversions")
            }
        finally:
            await admin.close()

    return asyncio.run(read())


def test_replay_rebuilds_the_live_tables_and_verify_passes(deployment: Deployment, target: str) -> None:
    d = deployment
    live_before = d.counts(d.schema)
    groups_before = live_group_offsets(d)
    assert live_before["conversion_audit"] == CONVERSIONS + 1
    assert live_before["conversion_rejection"] == len(REJECTED)

    result = d.replay("--projection", "all", "--target-schema", target, "--verify")

    assert result.returncode == 0, result.stdout + result.stderr
    assert d.counts(target) == live_before
    assert result.stdout.count(" equal ") == len(TABLES), result.stdout
    # Loaded without the audit tables' foreign keys and secondary index, finished with exactly the migrated
    # schema: every constraint (validated), index and insert-only trigger, by name and definition.
    assert "5 foreign keys and indexes deferred for the load, 5 added back" in result.stdout, result.stdout
    assert schema_catalog(d.settings.migration_database_dsn, target, leave_out=BOOKKEEPING) == live_catalog(d)
    # One bad message on rates-fetched, one on conversions-audited: counted, skipped, reported.
    assert "undecodable messages skipped: 2" in result.stdout, result.stdout
    # The topic holds the duplicate result (and the poison message); the table holds one row per request.
    assert d.topic_records("conversions-audited") == CONVERSIONS + 3
    # Nothing written to live, no live consumer group moved, and progress was logged (not a terminal).
    assert d.counts(d.schema) == live_before
    assert live_group_offsets(d) == groups_before
    assert "replay audit:" in result.stderr and "events/s" in result.stderr


def test_replaying_again_or_from_scratch_gives_the_same_tables(deployment: Deployment, target: str) -> None:
    d = deployment
    assert d.replay("--target-schema", target).returncode == 0
    first = d.summaries(target)

    again = d.replay("--target-schema", target)  # same target: resumes at the end, reads nothing new
    assert again.returncode == 0, again.stderr
    assert "resumed from its checkpoint" in again.stdout
    assert "audit: 0 events read" in again.stdout
    assert d.summaries(target) == first

    # Everything again, into a new schema, in one process (the default is a process per core).
    restarted = d.replay("--target-schema", target, "--restart", "--jobs", "1")
    assert restarted.returncode == 0, restarted.stderr
    assert "(fresh;" in restarted.stdout
    assert d.summaries(target) == first
    assert first == d.summaries(d.schema)


def test_verify_names_the_rows_that_differ(deployment: Deployment, target: str, scratch: str) -> None:
    d = deployment
    assert d.replay("--target-schema", target).returncode == 0
    d.copy_live(scratch)
    same = d.replay("--target-schema", target, "--verify-only", "--live-schema", scratch)
    assert same.returncode == 0, same.stdout + same.stderr

    extra_audit, extra_request = uuid.uuid4(), uuid.uuid4()
    with d.admin.begin() as conn:
        changed_id = conn.execute(text(f'SELECT id FROM "{scratch}".conversion_audit ORDER BY id LIMIT 1')).scalar()
        conn.execute(
            text(
                f'INSERT INTO "{scratch}".conversion_audit SELECT :id, :rid, rate_used_id, second_rate_id, rate_kind, '
                "base_currency, target_currency, input_amount, rate_value, margin, output_amount, converted_at, "
                f'recorded_at FROM "{scratch}".conversion_audit WHERE id = :changed'
            ),
            {"id": extra_audit, "rid": extra_request, "changed": changed_id},
        )
        conn.execute(
            text(f'UPDATE "{scratch}".conversion_audit SET output_amount = output_amount + 1 WHERE id = :id'),
            {"id": changed_id},
        )
        dropped = conn.execute(
            text(
                f'DELETE FROM "{scratch}".conversion_rejection WHERE request_id = '
                f'(SELECT request_id FROM "{scratch}".conversion_rejection ORDER BY 1 LIMIT 1) RETURNING request_id'
            )
        ).scalar()

    result = d.replay("--target-schema", target, "--verify-only", "--live-schema", scratch)

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"conversion_audit id={extra_audit}: missing in target" in out, out
    assert f"conversion_audit id={changed_id}: differs; output_amount: live=" in out, out
    assert f"conversion_rejection request_id={dropped}: missing in live" in out, out
    assert "exchange_rate" in out and out.count(" equal ") == len(TABLES) - 2  # the untouched tables still match


def test_a_killed_replay_resumes_to_identical_tables(deployment: Deployment, target: str) -> None:
    d = deployment
    audited_total = d.topic_records("conversions-audited")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ces", "replay", "--target-schema", target, "--batch-size", "50"],
        env=d.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll(
            lambda: d.checkpoint_progress(target, "conversions-audited") > 0,
            timeout=120,
            interval=0.02,
            what="audit checkpoint progress",
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    done = d.checkpoint_progress(target, "conversions-audited")
    assert 0 < done < audited_total  # killed in the middle of the audit phase
    assert 0 < d.counts(target)["conversion_audit"] < d.counts(d.schema)["conversion_audit"]
    # A fresh target loads without the audit tables' foreign keys and secondary index: not there yet.
    with d.admin.connect() as conn:
        deferred = conn.execute(text(f'SELECT count(*) FROM "{target}".replay_deferred')).scalar_one()
    assert deferred == 5
    assert schema_catalog(d.settings.migration_database_dsn, target, leave_out=BOOKKEEPING) != live_catalog(d)

    resumed = d.replay("--target-schema", target, "--verify")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from its checkpoint" in resumed.stdout
    assert "5 added back and validated" in resumed.stdout, resumed.stdout
    assert schema_catalog(d.settings.migration_database_dsn, target, leave_out=BOOKKEEPING) == live_catalog(d)
    assert d.counts(target) == d.counts(d.schema)
    assert d.summaries(target) == d.summaries(d.schema)


def live_catalog(d: Deployment) -> list[tuple[str, ...]]:
    return schema_catalog(d.settings.migration_database_dsn, d.schema)


def test_max_events_stops_early_and_a_rerun_completes(deployment: Deployment, target: str) -> None:
    d = deployment
    partial = d.replay("--target-schema", target, "--max-events", "1000", "--batch-size", "300")
    assert partial.returncode == 3, partial.stdout + partial.stderr
    assert "replay INCOMPLETE" in partial.stdout
    assert d.checkpoint_progress(target) == 1000  # exactly the budget, every offset accounted for
    assert d.counts(target)["exchange_rate"] == len(RATES)
    assert 0 < d.counts(target)["conversion_request"] < 1000

    completed = d.replay("--target-schema", target, "--verify")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert d.summaries(target) == d.summaries(d.schema)


def test_since_limits_the_conversion_topics_and_keeps_every_rate(deployment: Deployment, target: str) -> None:
    d = deployment
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    result = d.replay("--target-schema", target, "--since", tomorrow)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = d.counts(target)
    assert counts["exchange_rate"] == len(RATES)  # audits reference rates of any age: rates are read in full
    assert counts["conversion_request"] == 0

    earlier = d.replay("--target-schema", target, "--since", "2000-01-01T00:00:00Z")  # resumes: checkpoint wins
    assert earlier.returncode == 0
    assert d.counts(target)["conversion_request"] == 0


def test_swap_promotes_a_verified_replay_and_refuses_a_different_one(
    deployment: Deployment, target: str, scratch: str
) -> None:
    d = deployment
    d.copy_live(scratch)  # stands in for a live schema with its writers stopped
    assert d.replay("--target-schema", target).returncode == 0
    with d.admin.begin() as conn:
        conn.execute(
            text(f'DELETE FROM "{scratch}".exchange_rate WHERE id = (SELECT id FROM "{scratch}".exchange_rate LIMIT 1)')
        )

    checked = d.replay("--target-schema", target, "--verify-only", "--swap", "--live-schema", scratch)
    assert checked.returncode == 1, checked.stdout + checked.stderr  # verify first: no swap
    assert "missing in live" in checked.stdout
    refused = d.replay("--target-schema", target, "--swap", "--live-schema", scratch)  # the swap's own check
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not swapped" in refused.stderr and "missing in live" in refused.stdout
    assert d.counts(target) == d.counts(d.schema)  # nothing renamed

    drop_schemas(d.admin, scratch)
    d.copy_live(scratch)
    swapped = d.replay("--target-schema", target, "--verify-only", "--swap", "--live-schema", scratch)

    assert swapped.returncode == 0, swapped.stdout + swapped.stderr
    with d.admin.connect() as conn:
        names = set(
            conn.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": f"{scratch}%"}).scalars()
        )
        assert target not in set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())
        tables = set(
            conn.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": scratch}
            ).scalars()
        )
    assert len(names) == 2 and any("_replaced_" in n for n in names)
    assert "alembic_version" in tables and "replay_checkpoint" not in tables  # the migrated replay, promoted
    assert d.summaries(scratch) == d.summaries(d.schema)
    with pytest.raises(DBAPIError, match="insert-only"), d.admin.begin() as conn:  # with its triggers
        conn.execute(text(f'DELETE FROM "{scratch}".conversion_audit'))


def test_refuses_the_live_schema_and_schemas_it_did_not_make(deployment: Deployment, target: str, scratch: str) -> None:
    d = deployment
    live = d.replay("--target-schema", d.schema)
    assert live.returncode == 2 and "is the live schema" in live.stderr
    d.copy_live(scratch)
    foreign = d.replay("--target-schema", scratch, "--restart")
    assert foreign.returncode == 2 and "was not made by `ces replay`" in foreign.stderr
    assert d.counts(scratch) == d.counts(d.schema)  # not dropped
    audit_only = d.replay("--projection", "audit", "--target-schema", target)
    assert audit_only.returncode == 2 and "replay --projection rates" in audit_only.stderr
