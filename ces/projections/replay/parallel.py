"""`--jobs N`: the audit phase in N processes, each owning a group of partitions with its own consumer, decoder
and database connection: the parent takes the cut, loads the first group itself (its consumer and connection
are open already) and starts a worker process for each other group, adds up their progress and reports.

Why processes: decoding is Python (the GIL), and a thread per partition would share one core's worth of it.
Why the parent loads a group itself: a process costs its imports (~80 MiB of modules), and the parent would
otherwise sit idle holding its own; `--jobs 2` is two processes, not three (docs/replay.md).
Why it stays correct: checkpoints are per (topic, partition) and each worker writes only its own partitions'
checkpoints, each batch with its rows in its own transaction, exactly as one process does. Decisions of one
request id share a key, so a re-published decision lands in the same partition and the same worker; across
workers `ON CONFLICT DO NOTHING` on `conversion_request` still keeps one decision per request id.
A worker dies with its parent (`PR_SET_PDEATHSIG` on Linux), so a killed replay leaves nothing writing behind
it, and a re-run resumes from the checkpoints like after any kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import queue as queues
import resource
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ces.heap import settle_heap
from ces.projections.replay.model import LOGGER, PHASES, Partition, Phase, PhaseReport, ReplayError, ReplayOptions

if TYPE_CHECKING:
    from ces.projections.replay.ports import EventSource, ProgressSink, ReplayTarget

log = logging.getLogger(LOGGER)

# Builds a worker's own source and target, in the worker process: must be picklable (spawned, not forked:
# the parent has an event loop, a consumer and connection pools that a fork would share).
WorkerFactory = Callable[[], "tuple[EventSource, ReplayTarget]"]


class _GroupLoader(Protocol):
    async def load(
        self,
        source: EventSource,
        phase: Phase,
        pending: list[Partition],
        position: dict[Partition, int],
        ends: dict[Partition, int],
        report: PhaseReport,
    ) -> list[Partition]: ...


# The replay class itself (`run.Replay`), handed in by its caller and pickled by reference into the worker:
# this module then needs no import of `run.py`, which imports this one.
NewReplay = Callable[..., _GroupLoader]
_PR_SET_PDEATHSIG = 1


def partition_groups(remaining: Mapping[Partition, int], jobs: int) -> list[list[Partition]]:
    """At most `jobs` groups of partitions with about equal work (largest first, onto the lightest group)."""
    jobs = max(1, min(jobs, len(remaining)))
    groups: list[list[Partition]] = [[] for _ in range(jobs)]
    load = [0] * jobs
    for tp in sorted(remaining, key=lambda tp: (-remaining[tp], tp)):
        lightest = load.index(min(load))
        groups[lightest].append(tp)
        load[lightest] += remaining[tp]
    return [sorted(group) for group in groups if group]


def own_usage() -> tuple[float, float]:
    """This process's CPU seconds and peak RSS in MiB so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


class LoopProgress:
    """Progress from `run_workers`' thread, applied on the event loop's thread (where the parent's own group
    reports too): the sinks are not thread-safe."""

    def __init__(self, progress: ProgressSink, loop: asyncio.AbstractEventLoop) -> None:
        self.progress = progress
        self.loop = loop

    def begin(self, phase: str, total: int) -> None:
        self.loop.call_soon_threadsafe(self.progress.begin, phase, total)

    def advance(self, phase: str, done: int) -> None:
        self.loop.call_soon_threadsafe(self.progress.advance, phase, done)

    def end(self, phase: str) -> None:
        self.loop.call_soon_threadsafe(self.progress.end, phase)


class _QueueProgress:
    """A worker's progress sink: its increments go to the parent, which shows the sum."""

    def __init__(self, queue: Any, worker: int) -> None:
        self.queue = queue
        self.worker = worker

    def begin(self, phase: str, total: int) -> None:
        pass

    def advance(self, phase: str, done: int) -> None:
        self.queue.put((self.worker, "advance", done))

    def end(self, phase: str) -> None:
        pass


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        # No prctl: the parent check below is all there is.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker(
    new_replay: NewReplay,
    factory: WorkerFactory,
    options: ReplayOptions,
    prefix: str,
    phase_name: str,
    group: list[Partition],
    position: dict[Partition, int],
    ends: dict[Partition, int],
    queue: Any,
    worker: int,
    parent: int,
    log_level: int,
) -> None:
    _die_with_parent(parent)
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s %(name)s[{worker}]: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    report = PhaseReport(phase_name)
    try:
        source, target = factory()
        settle_heap()  # as `ces replay` does: what is built by now lives until exit (docs/replay.md)
        try:
            replay = new_replay(options, source, target, _QueueProgress(queue, worker), topic_prefix=prefix)

            async def load() -> list[Partition]:
                async with source as opened:
                    return await replay.load(opened, PHASES[phase_name], group, position, ends, report)

            left = asyncio.run(load())
        finally:
            target.close()
        report.complete = not left
        queue.put((worker, "done", (report, *own_usage())))
    except BaseException as exc:  # reported to the parent, which fails the replay with it
        queue.put((worker, "failed", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None


def run_workers(
    factory: WorkerFactory,
    options: ReplayOptions,
    prefix: str,
    phase_name: str,
    groups: Sequence[list[Partition]],
    position: dict[Partition, int],
    ends: dict[Partition, int],
    report: PhaseReport,
    progress: ProgressSink,
    stop: threading.Event | None = None,
    *,
    new_replay: NewReplay,
) -> None:
    """Blocking: one process per group until all are done; their reports are added into `report`.

    A worker that fails (or dies), or `stop` set (the parent's own group failed), stops the others (each has
    committed whole batches only) and raises `ReplayError`; a re-run resumes from the checkpoints.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    level, parent = logging.getLogger().getEffectiveLevel(), os.getpid()
    procs = [
        context.Process(
            target=_worker,
            args=(new_replay, factory, options, prefix, phase_name, group, position, ends, queue, i, parent, level),
            name=f"ces-replay-{i}",
            daemon=True,
        )
        for i, group in enumerate(groups)
    ]
    log.info("%s phase: %d worker processes: %s", phase_name, len(procs), [[f"{t}[{p}]" for t, p in g] for g in groups])
    for proc in procs:
        proc.start()
    done: set[int] = set()
    failure: str | None = None
    try:
        while len(done) < len(procs) and failure is None:
            if stop is not None and stop.is_set():
                failure = "the main process (its own group failed or was interrupted)"
                break
            try:
                worker, kind, value = queue.get(timeout=0.2)
            except queues.Empty:
                dead = [i for i, p in enumerate(procs) if i not in done and p.exitcode is not None]
                if dead:
                    failure = f"worker {dead[0]} exited with code {procs[dead[0]].exitcode} without finishing"
                continue
            if kind == "advance":
                progress.advance(phase_name, int(value))
            elif kind == "done":
                done.add(worker)
                part, cpu, rss = value
                merge(report, part)
                log.info(
                    "%s worker %d: %d events, CPU %.1fs, peak RSS %.0f MiB", phase_name, worker, part.events, cpu, rss
                )
            else:
                failure = f"worker {worker}: {value}"
    finally:
        for proc in procs:
            if proc.is_alive() and failure is not None:
                proc.terminate()  # between batches or in one: its transaction rolls back, nothing half-written
        for proc in procs:
            proc.join()
    if failure is not None:
        raise ReplayError(f"the {phase_name} phase failed in {failure}; re-run the same command to resume")


def merge(total: PhaseReport, part: PhaseReport) -> None:
    total.events += part.events
    total.applied += part.applied
    total.undecodable.update(part.undecodable)
    total.refused += part.refused
