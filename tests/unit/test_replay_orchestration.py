"""The replay's orchestration with an in-memory source and target: when a fresh target's constraints are
deferred and added back, and how the audit phase's partitions are split between worker processes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

import pytest

from ces.events.base import Event
from ces.projections.rate_rows import Refusal
from ces.projections.replay import Partition, Record, Replay, ReplayError, ReplayOptions, Written
from ces.projections.replay.parallel import partition_groups

TOPICS = {"rates-fetched": 1, "conversions-audited": 4, "conversions-rejected": 2}
PER_PARTITION = 3


class FakeSource:
    """Every partition holds PER_PARTITION records that do not decode (the orchestration is what is tested)."""

    def __init__(self) -> None:
        self.position_of: dict[Partition, int] = {}
        self.assigned: list[Partition] = []

    async def __aenter__(self) -> FakeSource:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    async def partitions(self, topics: Sequence[str]) -> list[Partition]:
        return [Partition(t, p) for t in topics for p in range(TOPICS[t])]

    async def end_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return {tp: PER_PARTITION for tp in partitions}

    async def beginning_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return {tp: 0 for tp in partitions}

    async def offsets_for_time(self, partitions: Sequence[Partition], since: datetime) -> dict[Partition, int | None]:
        return {tp: 0 for tp in partitions}

    def seek(self, starts: Mapping[Partition, int]) -> None:
        self.assigned = list(starts)
        self.position_of.update(starts)

    async def fetch(self, partitions: Sequence[Partition], max_records: int) -> list[Record]:
        records: list[Record] = []
        for tp in partitions:
            while self.position_of[tp] < PER_PARTITION and len(records) < max_records:
                records.append((tp.topic, tp.partition, self.position_of[tp], b"not an event"))
                self.position_of[tp] += 1
        return records

    async def position(self, partition: Partition) -> int:
        return self.position_of[partition]

    def pause(self, partition: Partition) -> None:
        pass


class FakeTarget:
    def __init__(self, *, resuming: bool, checkpoints: dict[Partition, int] | None = None) -> None:
        self.resuming = resuming
        self.checkpoints = dict(checkpoints or {})
        self.calls: list[str] = []

    def live_schemas(self) -> set[str]:
        return {"public"}

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        yield

    def prepare(self, *, restart: bool) -> bool:
        self.calls.append("prepare")
        return self.resuming

    def defer_constraints(self) -> int:
        self.calls.append("defer")
        return 5

    def restore_constraints(self) -> int:
        self.calls.append("restore")
        return 5

    def has_rates(self) -> bool:
        return True

    def load_checkpoints(self) -> dict[Partition, int]:
        return dict(self.checkpoints)

    def save_checkpoints(self, offsets: Mapping[Partition, int]) -> None:
        self.checkpoints.update(offsets)

    def preparer(self, phase: str, carried: tuple[type[Event], ...]) -> None:
        return None

    def batcher(self, phase: str, carried: tuple[type[Event], ...]) -> None:
        return None

    def write(self, phase: str, events: Sequence[Written], offsets: Mapping[Partition, int] | None) -> list[Refusal]:
        if offsets:
            self.calls.append(f"write {phase}")
            self.checkpoints.update(offsets)
        return []

    def count_rows(self, projection: str) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class Quiet:
    def begin(self, phase: str, total: int) -> None:
        pass

    def advance(self, phase: str, done: int) -> None:
        pass

    def end(self, phase: str) -> None:
        pass


def run(target: FakeTarget, projection: str = "all", **options: Any) -> Any:
    replay = Replay(ReplayOptions(projection, "rebuilt", "public", **options), FakeSource(), target, Quiet())
    return replay.run()


def test_a_fresh_target_defers_its_constraints_before_loading_and_restores_them_after() -> None:
    target = FakeTarget(resuming=False)
    report = run(target, batch_size=4)
    assert report.complete and report.deferred == 5 and report.restored == 5
    assert target.calls[:2] == ["prepare", "defer"]
    assert target.calls[-1] == "restore"
    assert "write audit" in target.calls
    assert all(offset == PER_PARTITION for offset in target.checkpoints.values())
    assert len(target.checkpoints) == sum(TOPICS.values())


def test_a_resumed_target_defers_nothing_but_adds_back_what_an_interrupted_run_left() -> None:
    target = FakeTarget(resuming=True)
    report = run(target)
    assert "defer" not in target.calls and report.deferred == 0
    assert target.calls[-1] == "restore"  # a no-op on a target that deferred nothing


def test_rates_only_defers_nothing() -> None:
    target = FakeTarget(resuming=False)
    run(target, projection="rates")
    assert "defer" not in target.calls


def test_a_stopped_replay_does_not_restore_yet() -> None:
    target = FakeTarget(resuming=False)
    report = run(target, max_events=5, batch_size=2, jobs=4)
    assert not report.complete
    assert "defer" in target.calls and "restore" not in target.calls
    # --max-events keeps one process and its exact budget, whatever --jobs says.
    assert sum(target.checkpoints.values()) == 5


def test_without_a_worker_factory_jobs_fall_back_to_one_process() -> None:
    target = FakeTarget(resuming=False)
    report = run(target, jobs=3)
    assert report.complete and report.phases[1].events == PER_PARTITION * 6


@pytest.mark.parametrize("jobs", [1, 2, 3, 4, 8])
def test_partition_groups_cover_every_partition_once_with_balanced_work(jobs: int) -> None:
    remaining = {Partition("a", p): work for p, work in enumerate([100, 90, 10, 10, 5, 0])}
    groups = partition_groups(remaining, jobs)
    assert len(groups) == min(jobs, len(remaining))
    assert sorted(tp for group in groups for tp in group) == sorted(remaining)
    loads = [sum(remaining[tp] for tp in group) for group in groups]
    if jobs == 2:
        assert max(loads) - min(loads) <= 10  # the two big ones apart, the small ones evening it out
    assert all(group == sorted(group) for group in groups)


def test_partition_groups_of_nothing_is_nothing() -> None:
    assert partition_groups({}, 4) == []


def run_parallel(target: FakeTarget, monkeypatch: pytest.MonkeyPatch, workers: Any, **options: Any) -> Any:
    monkeypatch.setattr("ces.projections.replay.run.run_workers", workers)
    replay = Replay(
        ReplayOptions("all", "rebuilt", "public", **options),
        FakeSource(),
        target,
        Quiet(),
        workers=lambda: (FakeSource(), FakeTarget(resuming=False)),
    )
    return replay.run()


def test_jobs_load_the_first_group_in_the_main_process_and_the_others_in_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given: list[list[Partition]] = []

    def workers(*args: Any, **kwargs: Any) -> None:
        _, _, _, phase, groups, _, _, report, progress, _ = args
        given.extend(tp for group in groups for tp in group)
        report.events += PER_PARTITION * sum(len(g) for g in groups)
        progress.advance(phase, 1)  # from this thread: relayed to the event loop's

    target = FakeTarget(resuming=False)
    report = run_parallel(target, monkeypatch, workers, jobs=2)
    audit = [Partition("conversions-audited", p) for p in range(4)] + [
        Partition("conversions-rejected", p) for p in range(2)
    ]
    mine = [tp for tp in audit if target.checkpoints.get(tp) == PER_PARTITION]
    assert given and mine and sorted(given + mine) == sorted(audit)  # each partition loaded once, by one side
    assert report.complete and report.phases[1].events == PER_PARTITION * len(audit)


def test_a_failing_worker_fails_the_replay_and_stops_the_main_processs_group(monkeypatch: pytest.MonkeyPatch) -> None:
    def workers(*args: Any, **kwargs: Any) -> None:
        raise ReplayError("the audit phase failed in worker 0: boom; re-run the same command to resume")

    target = FakeTarget(resuming=False)
    with pytest.raises(ReplayError, match="worker 0: boom"):
        run_parallel(target, monkeypatch, workers, jobs=2)
    assert "restore" not in target.calls


def test_a_failing_main_process_group_stops_the_workers_and_its_own_error_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped: list[bool] = []

    def workers(*args: Any, **kwargs: Any) -> None:
        stop = args[-1]
        stopped.append(stop.wait(timeout=30))
        raise ReplayError("the audit phase failed in the main process")

    class Failing(FakeTarget):
        def write(
            self, phase: str, events: Sequence[Written], offsets: Mapping[Partition, int] | None
        ) -> list[Refusal]:
            if phase == "audit":
                raise RuntimeError("database gone")
            return super().write(phase, events, offsets)

    target = Failing(resuming=False)
    with pytest.raises(RuntimeError, match="database gone"):
        run_parallel(target, monkeypatch, workers, jobs=2)
    assert stopped == [True]
