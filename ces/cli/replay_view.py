"""What `ces replay` shows while it runs and when it ends: a rich bar per phase on a terminal, log lines
elsewhere, and the end-of-run report."""

from __future__ import annotations

import logging
import time
from collections import Counter

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

from ces.projections.replay.model import LOGGER, ReplayReport

log = logging.getLogger(LOGGER)


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
    if report.deferred or report.restored:
        lines.append(
            f"  constraints: {report.deferred} foreign keys and indexes deferred for the load, "
            f"{report.restored} added back and validated in {report.restore_seconds:.1f}s"
        )
    if report.rows:
        lines.append("  rows in target: " + ", ".join(f"{t} {n:,}" for t, n in report.rows.items()))
    rate = report.events / report.seconds if report.seconds else 0.0
    verdict = "complete" if report.complete else "INCOMPLETE"
    lines.append(f"replay {verdict} in {report.seconds:.1f}s: {report.events:,} events ({rate:,.0f} events/s)")
    return lines
