"""`ces convert --file F --out R`: convert every request of a CSV or NDJSON file through Kafka, one result line each.

The requests are produced to `conversion-requests` as this process's Kafka principal (an outside producer,
`ces-producer`: source `.stack/secrets/producer.env`), the decisions read back from the decision topics, and
one result line per request line written to `--out` in the file's order, each `{"line": N, ...}` with the
shape of a `POST /v1/conversions/batch` slot. Exit 0 when every line has its result, 1 when some are still
undecided at `--timeout` (rerun: it is idempotent), 2 when the file cannot be read at all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ces.settings import Settings

if TYPE_CHECKING:
    from ces.cli.request_files import Line

# At most this many requests wait for their decision at once (the rest follow as decisions come in).
MAX_IN_FLIGHT = 50_000
OUTCOMES = ("audited", "rejected", "refused", "undecided")


def add_parsers(sub: Any) -> None:
    parser = sub.add_parser("convert", help="convert a CSV or NDJSON file of requests through Kafka")
    parser.add_argument("--file", required=True, type=Path, help="requests: .csv (with a header) or .ndjson")
    parser.add_argument("--out", required=True, type=Path, help="results, one JSON object per request line")
    parser.add_argument("--format", choices=("csv", "ndjson"), help="the input's format (default: from its suffix)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every decision")
    parser.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace, settings: Settings) -> int:
    from ces.cli.request_files import UnreadableFile, format_of, read_lines, result_line

    try:
        fmt = format_of(args.file, args.format)
        skew = timedelta(seconds=settings.max_clock_skew_seconds)
        with args.file.open("rb") as source:  # read a bounded line at a time (request_files.physical_lines)
            lines = read_lines(source, fmt, args.file.name, max_amount=settings.max_amount, max_clock_skew=skew)
        # Opened before anything is produced: an --out that cannot be written (a directory, a missing folder)
        # must not be found only after every request was converted and its results have nowhere to go.
        out = args.out.open("w", encoding="utf-8")
    except (UnreadableFile, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with out:
        started = time.perf_counter()
        results = asyncio.run(_convert(lines, settings, args.timeout))
        elapsed = time.perf_counter() - started
        for line, result in zip(lines, results, strict=True):
            out.write(result_line(line.number, result) + "\n")
    counts = Counter(r["outcome"] for r in results)
    summary = ", ".join(f"{counts[k]} {k}" for k in OUTCOMES)
    rate = len(lines) / elapsed if elapsed > 0 else 0.0
    print(
        f"{len(lines)} lines: {summary}; {elapsed:.1f}s ({rate:,.0f} lines/s); results in {args.out}", file=sys.stderr
    )
    return 1 if counts["undecided"] else 0


async def _convert(lines: list[Line], settings: Settings, timeout: float) -> list[dict[str, Any]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ces.bootstrap import conversion_requester
    from ces.events.conversions import ConversionRequested
    from ces.http.conversion_input import Refusal
    from ces.http.outcomes import decided_result, refused_result

    wanted = [line.request for line in lines if isinstance(line.request, ConversionRequested)]
    outcomes: list[Any] = []
    if wanted:
        console = Console(stderr=True)
        columns = (TextColumn("converting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
            task = progress.add_task("converting", total=len(wanted))
            async with conversion_requester(settings, max_pending=min(len(wanted), MAX_IN_FLIGHT)) as requester:
                outcomes = await requester.convert_many(
                    wanted, timeout=timeout, on_decided=lambda: progress.advance(task)
                )
    decided = iter(outcomes)
    return [
        refused_result(line.request)
        if isinstance(line.request, Refusal)
        else decided_result(line.request, next(decided), timeout)
        for line in lines
    ]
