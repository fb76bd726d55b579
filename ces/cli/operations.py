"""`ces worker`, `ces gateway`, `ces db`, `ces events schemas`, `ces cache rebuild`: running and keeping CES."""

from __future__ import annotations

import argparse
from typing import Any

from ces.settings import Settings


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from ces.adapters.postgres import migrate

    migrate.upgrade(
        settings.migration_database_dsn, schema=args.schema, revision=args.revision, app_role=settings.database_app_role
    )
    print(f"database at revision {args.revision}")
    return 0


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from ces.bootstrap.gateway import request_signer, run_gateways

    if args.processes is not None and args.processes < 1:
        raise SystemExit("--processes must be at least 1")
    try:
        request_signer(settings)
    except Exception as exc:  # MissingSigningKey: one line, not a traceback from every child process
        raise SystemExit(f"error: {exc}") from None
    return run_gateways(settings, args.processes or settings.gateway_processes)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ces.bootstrap.worker import run_worker

    run_worker(settings)
    return 0


def cmd_events_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from ces.events.schemas import export

    for path in export(Path(args.out)):
        print(path)
    return 0


def cmd_cache_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ces.adapters.postgres.rate_store import RateRepository
    from ces.bootstrap import build_engine, build_rate_cache, build_redis
    from ces.services.cache_rebuild import rebuild_from_database

    async def run() -> int:
        client = build_redis(settings)
        try:
            return await rebuild_from_database(RateRepository(engine), build_rate_cache(settings, client))
        finally:
            await client.aclose()

    engine = build_engine(settings)
    try:
        pairs = asyncio.run(run())
    finally:
        engine.dispose()
    print(f"cache rebuilt from PostgreSQL: {pairs} pairs offered")
    return 0


def add_parsers(sub: Any) -> None:
    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade"])
    db.add_argument("--revision", default="head")
    db.add_argument("--schema", default=None, help="migrate a schema other than the default one")
    db.set_defaults(func=cmd_db)

    events = sub.add_parser("events", help="the event contract")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    schemas = events_sub.add_parser("schemas", help="export the JSON Schema of every event")
    schemas.add_argument("--out", default="docs/schemas")
    schemas.set_defaults(func=cmd_events_schemas)

    cache = sub.add_parser("cache", help="the Redis rate cache")
    cache.add_argument("action", choices=["rebuild"])
    cache.set_defaults(func=cmd_cache_rebuild)

    gateway = sub.add_parser("gateway", help="the HTTP gateway (CES_GATEWAY_HOST:CES_GATEWAY_PORT)")
    gateway.add_argument(
        "--processes", type=int, default=None, help="gateway processes sharing the port (CES_GATEWAY_PROCESSES)"
    )
    gateway.set_defaults(func=cmd_gateway)
    sub.add_parser("worker", help="a Faust worker: the leader-elected rate timer and the batch consumers").set_defaults(
        func=cmd_worker
    )
