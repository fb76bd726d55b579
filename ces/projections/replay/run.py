"""The replay itself: phases in order, a consistent cut, batches written with their checkpoints, resuming."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Sequence

from ces.events.base import Event
from ces.projections.rate_rows import Refusal
from ces.projections.replay import decoding
from ces.projections.replay.model import (
    LOGGER,
    MAX_WARNINGS,
    PHASES,
    PROJECTIONS,
    BatchRefused,
    Partition,
    Phase,
    PhaseReport,
    ReplayError,
    ReplayOptions,
    ReplayReport,
    Written,
    check_schema_name,
)
from ces.projections.replay.parallel import (
    LoopProgress,
    WorkerFactory,
    merge,
    own_usage,
    partition_groups,
    run_workers,
)
from ces.projections.replay.ports import EventSource, ProgressSink, ReplayTarget

log = logging.getLogger(LOGGER)


class Replay:
    def __init__(
        self,
        options: ReplayOptions,
        source: EventSource,
        target: ReplayTarget,
        progress: ProgressSink,
        *,
        topic_prefix: str = "",
        workers: WorkerFactory | None = None,
    ) -> None:
        self.options = options
        self.source = source
        self.target = target
        self.progress = progress
        self.prefix = topic_prefix
        self.workers = workers  # builds a worker process's own source and target (--jobs); None: one process
        self.read = 0

    def run(self) -> ReplayReport:
        target = check_schema_name(self.options.target_schema)
        # Both the schema compared with and the one the workers write to (they differ with --live-schema).
        if target in {self.options.live_schema} | self.target.live_schemas():
            raise ReplayError(f"the target schema {target!r} is the live schema; replay into a fresh one")
        if self.options.projection not in PROJECTIONS:
            raise ReplayError(f"unknown projection {self.options.projection!r}")
        started = time.monotonic()
        try:
            with self.target.exclusive():
                resumed = self.target.prepare(restart=self.options.restart)
                if self.options.projection == "audit" and not self.target.has_rates():
                    raise ReplayError(
                        "the target has no exchange_rate rows, and audit rows reference them: "
                        "replay --projection rates (or all) into it first"
                    )
                report = ReplayReport(target, self.options.live_schema, resumed)
                if not resumed and "audit" in PROJECTIONS[self.options.projection]:
                    # A fresh target: no per-row foreign-key work while loading; added back at the end.
                    report.deferred = self.target.defer_constraints()
                asyncio.run(self._replay(report))
                if report.complete:
                    # Also on a resumed run: whatever an earlier, interrupted run left deferred.
                    began = time.monotonic()
                    report.restored = self.target.restore_constraints()
                    report.restore_seconds = time.monotonic() - began
                report.rows = self.target.count_rows(self.options.projection)
                log.info("replay main process: CPU %.1fs, peak RSS %.0f MiB", *own_usage())
        finally:
            self.target.close()
        report.seconds = time.monotonic() - started
        return report

    async def _replay(self, report: ReplayReport) -> None:
        async with self.source as source:
            phases = [PHASES[name] for name in PROJECTIONS[self.options.projection]]
            partitions = {
                phase.name: await source.partitions([self.prefix + spec.name for spec, _ in phase.sources])
                for phase in phases
            }
            ends: dict[Partition, int] = {}
            for phase in reversed(phases):  # the cut: audit topics first, then rates (see the package doc)
                ends.update(await source.end_offsets(partitions[phase.name]))
            saved = await asyncio.to_thread(self.target.load_checkpoints)
            for phase in phases:
                phase_report = PhaseReport(phase.name)
                report.phases.append(phase_report)
                await self._phase(source, phase, partitions[phase.name], ends, saved, phase_report)
                if not phase_report.complete:
                    break  # --max-events: later phases must not run ahead of an unfinished one

    def _since_applies(self, phase: Phase) -> bool:
        # With `all`, rates are read in full whatever --since says: audits reference rates of any age.
        return self.options.since is not None and (phase.name == "audit" or self.options.projection == "rates")

    async def _starts(
        self,
        source: EventSource,
        phase: Phase,
        tps: list[Partition],
        ends: dict[Partition, int],
        saved: dict[Partition, int],
        report: PhaseReport,
    ) -> dict[Partition, int]:
        begins = await source.beginning_offsets(tps)
        by_time: dict[Partition, int | None] = {}
        if self._since_applies(phase) and self.options.since is not None:
            by_time = await source.offsets_for_time(tps, self.options.since)
        starts = {}
        for tp in tps:
            if tp in saved:
                start = saved[tp]
                report.resumed_partitions += 1
                if start > ends[tp]:
                    raise ReplayError(
                        f"checkpoint of {tp.topic}[{tp.partition}] is past the partition's end ({start} > {ends[tp]}): "
                        "was the topic recreated? re-run with --restart"
                    )
                if start < begins[tp]:
                    log.warning(
                        "%s[%d]: offsets %d..%d were deleted by retention since the checkpoint; they are lost",
                        tp.topic,
                        tp.partition,
                        start,
                        begins[tp] - 1,
                    )
            elif by_time:
                found = by_time.get(tp)
                start = found if found is not None else ends[tp]
            else:
                start = begins[tp]
            starts[tp] = max(start, begins[tp])
        return starts

    async def _phase(
        self,
        source: EventSource,
        phase: Phase,
        tps: list[Partition],
        ends: dict[Partition, int],
        saved: dict[Partition, int],
        report: PhaseReport,
    ) -> None:
        started = time.monotonic()
        position = await self._starts(source, phase, tps, ends, saved, report)
        first_time = {tp: offset for tp, offset in position.items() if tp not in saved}
        if first_time:
            # Record where each partition starts (what --since decided), so a re-run resumes from exactly
            # here whatever its own options say.
            await asyncio.to_thread(self.target.save_checkpoints, first_time)
        pending = [tp for tp in tps if position[tp] < ends[tp]]
        self.progress.begin(phase.name, sum(ends[tp] - position[tp] for tp in pending))
        groups = partition_groups({tp: ends[tp] - position[tp] for tp in pending}, self._jobs(phase))
        if len(groups) > 1 and self.workers is not None:
            await self._parallel(source, phase, groups, position, ends, report)
            pending = []  # _parallel raised otherwise
        else:
            pending = await self.load(source, phase, pending, position, ends, report)
        report.complete = not pending
        report.seconds = time.monotonic() - started
        self.progress.end(phase.name)

    async def _parallel(
        self,
        source: EventSource,
        phase: Phase,
        groups: list[list[Partition]],
        position: dict[Partition, int],
        ends: dict[Partition, int],
        report: PhaseReport,
    ) -> None:
        """The first group in this process, each other group in a worker process (`parallel.py`). Whichever
        side fails first stops the other (both commit whole batches only), and the error is raised."""
        assert self.workers is not None
        stop = threading.Event()
        theirs, mine = PhaseReport(phase.name), PhaseReport(phase.name)  # each written by one thread only
        # A copy: the workers' thread pickles it while this loop moves the first group's positions on.
        starts = dict(position)
        work = functools.partial(
            run_workers,
            self.workers,
            self.options,
            self.prefix,
            phase.name,
            groups[1:],
            starts,
            ends,
            theirs,
            new_replay=type(self),
        )
        others = asyncio.ensure_future(
            asyncio.to_thread(work, LoopProgress(self.progress, asyncio.get_running_loop()), stop)
        )
        own = asyncio.ensure_future(self.load(source, phase, groups[0], position, ends, mine))
        try:
            await asyncio.wait([own, others], return_when=asyncio.FIRST_EXCEPTION)
        finally:
            if not own.done():  # a worker failed, or this task is cancelled (Ctrl-C)
                own.cancel()  # load() lets its batch in flight finish
            if not others.done():
                stop.set()
            await asyncio.wait([own, others])
        if not own.cancelled() and own.exception() is not None:
            others.exception()  # retrieved: the workers' "stopped" error is a consequence of this one
            own.result()  # the main process's own error (the workers were stopped because of it)
        others.result()  # a worker's error (the main process's group was cancelled because of it)
        left = own.result()
        if left:
            raise ReplayError(f"the {phase.name} phase left {len(left)} partitions unfinished in the main process")
        merge(report, mine)
        merge(report, theirs)
        log.info(
            "%s main process: %d events (%s), CPU %.1fs so far, peak RSS %.0f MiB so far",
            phase.name,
            mine.events,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in groups[0]),
            *own_usage(),
        )

    def _jobs(self, phase: Phase) -> int:
        # --max-events is a test hook with an exact budget: one process keeps it exact.
        if phase.name != "audit" or self.options.max_events is not None:
            return 1
        return self.options.jobs

    async def load(
        self,
        source: EventSource,
        phase: Phase,
        pending: list[Partition],
        position: dict[Partition, int],
        ends: dict[Partition, int],
        report: PhaseReport,
    ) -> list[Partition]:
        """Read `pending` from `position` up to `ends`, writing batches with their checkpoints; returns the
        partitions not finished (only --max-events stops early)."""
        expected = {self.prefix + spec.name: cls for spec, cls in phase.sources}
        # Records the target can turn into rows straight from their bytes skip decoding (and building events).
        preparers = {topic: self.target.preparer(phase.name, carried) for topic, carried in expected.items()}
        batchers = {topic: self.target.batcher(phase.name, carried) for topic, carried in expected.items()}
        batched = {topic: batcher for topic, batcher in batchers.items() if batcher is not None}
        pending = list(pending)
        source.seek({tp: position[tp] for tp in pending})  # replaces the previous phase's partitions
        budget = self.options.max_events
        # One batch in flight: while a worker thread writes batch N (the database driver releases the GIL
        # while the server works), this loop fetches and decodes batch N+1. Writes stay strictly
        # sequential, so checkpoints commit in offset order.
        writing: asyncio.Future[None] | None = None
        writing_offsets = 0
        try:
            while pending:
                limit = self.options.batch_size if budget is None else min(self.options.batch_size, budget - self.read)
                if limit <= 0:
                    break
                fetched = await source.fetch(pending, limit)
                advanced: dict[Partition, int] = {}
                moved = 0
                past_cut = False
                for tp in list(pending):
                    # The position, not the last record's offset + 1: it also steps over offsets that hold
                    # no record for us (transaction markers), and it is clamped to the cut.
                    reached = await source.position(tp)
                    past_cut = past_cut or reached > ends[tp]
                    nxt = min(reached, ends[tp])
                    if nxt != position[tp]:
                        advanced[tp] = nxt
                        moved += nxt - position[tp]
                        position[tp] = nxt
                    if nxt >= ends[tp]:
                        pending.remove(tp)
                        source.pause(tp)
                if not advanced:
                    continue
                # Records after the cut are a later run's. Only a partition whose position passed its cut can
                # have any (every record fetched is before the position), so the per-record test is rare.
                records = [r for r in fetched if r[2] < ends[Partition(r[0], r[1])]] if past_cut else fetched
                events = decoding.read(records, expected, preparers, batched, report)
                self.read += len(records)
                if writing is not None:
                    await writing
                    self.progress.advance(phase.name, writing_offsets)
                # Submitted now (not when this loop next yields, as a task wrapping to_thread would be).
                writing = asyncio.get_running_loop().run_in_executor(
                    None, functools.partial(self._write, phase, events, advanced, report)
                )
                writing_offsets = moved
            if writing is not None:
                await writing
                self.progress.advance(phase.name, writing_offsets)
        finally:
            if writing is not None and not writing.done():
                await asyncio.wait([writing])  # leaving early (an error, Ctrl-C): let the batch finish
        return pending

    def _write(self, phase: Phase, events: list[Written], advanced: dict[Partition, int], report: PhaseReport) -> None:
        """Blocking: the batch's rows and its checkpoint, in one transaction."""
        try:
            report.refused += self._refused(phase, self.target.write(phase.name, events, advanced))
        except BatchRefused as exc:
            # Refused as a batch (a constraint): find the culprits one by one. The checkpoint must not
            # ride on the first single-event transaction, or a kill here would skip the rest.
            log.warning(
                "the database refused a batch of %d %s events (%s); retrying one by one",
                len(events),
                phase.name,
                exc.detail,
            )
            self._one_by_one(phase, decoding.as_events(events), report)
            self.target.save_checkpoints(advanced)  # the whole batch is applied now

    def _one_by_one(self, phase: Phase, events: Sequence[Event], report: PhaseReport) -> None:
        for item in events:
            try:
                report.refused += self._refused(phase, self.target.write(phase.name, [item], None))
            except BatchRefused as exc:
                if report.refused < MAX_WARNINGS:
                    log.warning(
                        "skipping %s %s refused by the database: %s", item.event_type, item.event_id, exc.detail
                    )
                report.refused += 1

    @staticmethod
    def _refused(phase: Phase, refusals: Sequence[Refusal]) -> int:
        for refusal in refusals[:MAX_WARNINGS]:
            log.warning(
                "skipping a %s event the projection refuses: %s: %s", phase.noun, refusal.reason, refusal.detail
            )
        return len(refusals)
