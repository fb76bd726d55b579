"""`ces replay`: rebuild the projections from the topics into a fresh schema, verify, swap (docs/replay.md)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ces.heap import settle_heap
from ces.settings import Settings


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild projections from the topics into a fresh schema; verify; swap (docs/replay.md).

    Exit codes: 0 done (and equal, when verifying), 1 verification found differences, 2 error,
    3 stopped early (--max-events), 130 interrupted (re-run the same command to resume).
    """
    import logging

    from rich.console import Console

    from ces.adapters.postgres.replay_swap import SwapRefused, swap, verify_target
    from ces.adapters.postgres.replay_target import resolve_live_schema
    from ces.adapters.postgres.verify import VerifyError, render
    from ces.bootstrap import build_replay
    from ces.cli.replay_view import LogProgress, RichProgress, report_lines
    from ces.projections import replay

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("alembic", "aiokafka"):  # their INFO lines (migrations, assignments) are noise here
        logging.getLogger(chatty).setLevel(logging.WARNING)
    tty = sys.stdout.isatty()
    console = Console() if tty else Console(width=200)  # never wrap ids in logs and pipes
    try:
        live = args.live_schema or resolve_live_schema(settings.migration_database_dsn)
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
                jobs=args.jobs if args.jobs is not None else (os.cpu_count() or 1),
            )
            progress: RichProgress | LogProgress = RichProgress(console) if tty else LogProgress()
            with progress:
                runner = build_replay(settings, options, progress)
                # What is built by now (modules, engine, clients) lives until exit. Frozen out of the cyclic
                # collector's sight, the full collections that millions of decoded events trigger no longer
                # walk it (docs/replay.md, "Where the time goes").
                settle_heap()
                report = runner.run()
            for line in report_lines(report, settings.topic_prefix):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            if not report.complete:
                return 3
        if args.verify or args.verify_only:
            results = verify_target(
                settings.migration_database_dsn, live, target, args.projection, max_diffs=args.max_diffs
            )
            render(results, live, target, console)
            if not all(r.ok for r in results):
                return 1
        if args.swap:
            replaced = swap(settings.migration_database_dsn, live, target)
            console.print(f"swapped: {target!r} is now {live!r}; the previous one is {replaced!r}", markup=False)
    except SwapRefused as exc:
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


def add_parsers(sub: Any) -> None:
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
    replay.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes for the audit phase, the main one included, each a group of partitions (default: the CPU "
        "count, at most one per partition)",
    )
    replay.add_argument("--max-events", type=int, default=None, help=argparse.SUPPRESS)  # tests: stop early
    replay.set_defaults(func=cmd_replay)
