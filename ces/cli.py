"""The `ces` command: the local stack, migrations and CES's own processes."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from ces.settings import Settings, get_settings
from ces.stack.services import Status
from ces.stack.system import StackError


def _print_statuses(statuses: list[Status]) -> None:
    for s in statuses:
        answers = "answers" if s.answers else "does not answer"
        owner = "managed" if s.managed else "external"
        print(f"  {s.name:<9} {s.address:<22} {answers:<16} {owner:<9} {s.detail}")


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from ces.stack import manager

    if args.action == "up":
        started = time.monotonic()
        statuses = manager.up(settings)
        _print_statuses(statuses)
        print(f"stack up in {time.monotonic() - started:.1f}s (data and logs in {settings.stack_dir}/)")
        return 0
    if args.action == "status":
        statuses = manager.status(settings)
        _print_statuses(statuses)
        return 0 if all(s.answers for s in statuses) else 1
    _print_statuses(manager.down(settings))
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from ces.projections import migrate

    migrate.upgrade(settings.database_url, schema=args.schema, revision=args.revision)
    print(f"database at revision {args.revision}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ces.bootstrap import run_worker

    run_worker(settings)
    return 0


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
    return result


if __name__ == "__main__":
    sys.exit(main())
