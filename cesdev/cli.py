"""The `cesdev` command: the local native stack (Kafka, PostgreSQL, Redis), the whole service up and down, and the
provider simulator. Development tooling: `ces` (the runtime) never imports it."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import date

from ces.settings import Settings
from cesdev.stack.services import Status
from cesdev.stack.system import StackError


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
        _print_secrets_location(settings)
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
    if args.action == "purge":
        import shutil

        from cesdev.stack.postgres import Postgres

        # The one thing of the stack outside its directory (as root): the cluster under the postgres home.
        home = Postgres(settings).home
        if not home.is_relative_to(settings.stack_dir.resolve()) and home.exists():
            shutil.rmtree(home)
            print(f"  removed {home}")
    return 0


def _print_secrets_location(settings: Settings) -> None:
    from cesdev.stack import secrets

    print(
        f"  secrets   passwords in {secrets.secrets_dir(settings)}/ (mode 0600; per principal: "
        f"{', '.join(f'{role}.env' for role in secrets.ROLES)}; docs/security.md)"
    )


def _prepare(settings: Settings) -> None:
    """Schema (as the owner role), topics and ACLs (as Kafka's admin): what CES needs before its processes."""

    from ces.adapters.postgres import migrate
    from cesdev.stack import secrets

    other = secrets.other_principal(settings, "admin")
    if other is not None:
        raise StackError(
            f"this shell acts as Kafka principal {other!r} (CES_KAFKA_USERNAME; a sourced "
            f".stack/secrets/*.env?), but preparing the stack needs its admin, and each CES process gets "
            f"its own principal from the stack: run this from a shell without CES_KAFKA_USERNAME and "
            f"CES_KAFKA_PASSWORD (e.g. `unset CES_KAFKA_USERNAME CES_KAFKA_PASSWORD`)"
        )
    admin = secrets.with_credentials(settings, "admin")
    migrate.upgrade(admin.migration_database_dsn, app_role=admin.database_app_role)
    print("  schema    migrated to head (as the owner role; application role granted)")
    _kafka_setup(admin)


def _kafka_setup(admin: Settings) -> None:
    """Topics and the principals' ACLs, as Kafka's admin (`admin` carries its credentials)."""
    import asyncio

    from ces.adapters.kafka.admin import ensure_topics
    from ces.adapters.kafka.connection import KafkaConnection
    from cesdev.stack import acls

    settings = admin
    kafka = KafkaConnection.from_settings(admin)
    created = asyncio.run(
        ensure_topics(
            kafka,
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            prefix=settings.topic_prefix,
        )
    )
    print(f"  topics    {len(created)} created" + (f" ({', '.join(created)})" if created else ""))
    asyncio.run(acls.grant_ces(kafka, prefix=settings.topic_prefix, app_id=settings.app_id))
    print("  acls      granted to the worker, gateway and producer principals")


def cmd_prepare(args: argparse.Namespace, settings: Settings) -> int:
    _prepare(settings)
    return 0


def cmd_kafka_setup(args: argparse.Namespace, settings: Settings) -> int:
    """docker-compose's one-shot `kafka-setup` service: topics and ACLs with the CES_KAFKA_* of the environment
    (the admin's), the same `grant_ces` as the local stack."""
    from cesdev.stack import secrets

    _kafka_setup(secrets.with_credentials(settings, "admin"))
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """The whole service on its local defaults: stack, schema, topics, then CES's processes."""
    from cesdev.stack import apps, manager

    started = time.monotonic()
    _print_statuses(manager.up(settings))
    _print_secrets_location(settings)
    _prepare(settings)
    print(f"  api key   {_dev_key(settings)} (for the gateway: Authorization: Bearer $(cat <that file>))")
    for app in apps.ces_apps():
        state = apps.start(settings, app)
        print(f"  {app.name:<9} {state:<16} log: {app.log_file(settings)}")
    print(f"  rates     {_wait_for_rates(settings)}")
    print(f"  history   {_load_history(settings)}")
    print(f"CES is up in {time.monotonic() - started:.1f}s. Logs: {settings.stack_dir}/logs/. Stop: cesdev down")
    return 0


def _wait_for_rates(settings: Settings, timeout: float = 60.0) -> str:
    """Conversions need rates: wait for the worker's first fetch to be projected, so `up` means usable."""
    from ces.adapters.postgres.rate_store import RateRepository
    from ces.bootstrap import build_engine
    from cesdev.stack import secrets

    engine = build_engine(secrets.with_credentials(settings, "admin"))
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


# The bundled ECB history holds ~222,000 rows; fewer than this means it was never loaded.
HISTORY_ROWS = 200_000


def _load_history(settings: Settings) -> str:
    """The 27 years of bundled ECB rates, for conversions at a past date, time series and the dashboard's
    chart: backfilled through Kafka in the background when the rate table lacks them (a few minutes)."""
    from ces.adapters.postgres.rate_store import RateRepository
    from ces.bootstrap import build_engine
    from cesdev.stack import apps, process, secrets

    engine = build_engine(secrets.with_credentials(settings, "admin"))
    try:
        count = RateRepository(engine).count()
    finally:
        engine.dispose()
    backfill = apps.history_backfill()
    if count >= HISTORY_ROWS:
        return f"{count:,} rate rows: the bundled ECB history (1999 on) is loaded"
    log = backfill.log_file(settings)
    if log.exists() and b"RateFetched events produced" in log.read_bytes():
        # Produced already: the worker is still projecting it. Producing it again would add nothing but a
        # second copy of 222,000 events to the topic.
        return f"{count:,} rate rows so far: the worker is projecting the bundled ECB history ({log})"
    if process.running_pid(backfill.pid_file(settings)) is None:
        apps.launch(settings, backfill)
    return f"loading the bundled ECB history (1999 on) in the background (a few minutes); log: {log}"


def _dev_key(settings: Settings) -> str:
    """A development API key (scopes convert, read), kept in the stack dir (mode 0600) and reused while valid."""
    import os

    from sqlalchemy import create_engine

    from ces.adapters.postgres.api_keys import PostgresApiKeyStore
    from ces.services.api_keys import Scope, create_key, key_hash
    from cesdev.stack import secrets

    path = settings.stack_dir.resolve() / "dev-api-key"
    # Keys are managed by the owner role (ces keys); the gateway's application role may only read them.
    engine = create_engine(secrets.with_credentials(settings, "admin").migration_database_dsn)
    try:
        store = PostgresApiKeyStore(engine)
        if path.exists():
            found = store.find(key_hash(path.read_text().strip()))
            if found is not None and found.active:
                return str(path)
        _, secret = create_key(store, f"dev-{time.strftime('%Y%m%d-%H%M%S')}", frozenset(Scope))
    finally:
        engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return str(path)


def _masked(text: str, settings: Settings) -> str:
    """Error text without any password of the settings or of the stack's secrets file."""
    from ces.settings import mask_secrets
    from cesdev.stack import secrets

    text = mask_secrets(text, settings)
    stack = secrets.load(settings)
    if stack is not None:
        for group in (stack.kafka, stack.postgres, stack.redis):
            for password in group.values():
                text = text.replace(password, "***")
        if stack.request_signing_key:
            text = text.replace(stack.request_signing_key, "***")
    return text


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from cesdev.stack import apps, manager

    for app in reversed(apps.ces_apps()):
        print(f"  {app.name:<9} {'stopped' if apps.stop(settings, app) else 'not running'}")
    _print_statuses(manager.down(settings))
    return 0


def cmd_provider_sim(args: argparse.Namespace, settings: Settings) -> int:
    from cesdev.provider_sim.app import run_sim

    run_sim(
        args.host or settings.provider_sim_host, args.port or settings.provider_sim_port, args.today, live=args.live
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cesdev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local Kafka, PostgreSQL and Redis")
    stack.add_argument("action", choices=["up", "status", "down", "purge"], help="purge: down, then remove the data")
    stack.set_defaults(func=cmd_stack)

    sub.add_parser("up", help="stack, migrations, topics and CES processes").set_defaults(func=cmd_up)
    sub.add_parser(
        "prepare", help="migrations (owner role), topics and Kafka ACLs (admin) on a running stack"
    ).set_defaults(func=cmd_prepare)
    sub.add_parser(
        "kafka-setup", help="topics and Kafka ACLs only, as the admin of CES_KAFKA_* (docker-compose's setup step)"
    ).set_defaults(func=cmd_kafka_setup)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ces.cli import run

    return run(build_parser().parse_args(argv), mask=_masked, also=(StackError,))


if __name__ == "__main__":
    sys.exit(main())
