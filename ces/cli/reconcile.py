"""`ces reconcile`: requests produced vs decisions and dead letters, per partition."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ces.settings import Settings

if TYPE_CHECKING:
    from ces.services.reconcile import ReconcileReport


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    """Requests produced vs outcomes, per partition (docs/operations.md#reconciliation).

    Exit codes: 0 every request message has one outcome and no request id was decided twice, 1 a gap or
    a double decision, 2 error (a topic missing, Kafka unreachable).
    """
    import asyncio
    import json

    from rich.console import Console
    from rich.table import Table

    from ces.adapters.kafka.connection import KafkaConnection
    from ces.adapters.kafka.reader import KafkaReconcileSource, TopicMissing
    from ces.events import topics
    from ces.services.reconcile import reconcile, render_lines

    prefix = settings.topic_prefix
    requests_topic = prefix + topics.CONVERSION_REQUESTS.name

    async def run() -> ReconcileReport:
        source = KafkaReconcileSource(
            KafkaConnection.from_settings(settings),
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


def add_parsers(sub: Any) -> None:
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
