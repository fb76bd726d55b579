"""What the replay needs from the outside, as Protocols it owns: where events come from, where rows go, who
watches the progress. Adapters implement them (`ces/adapters/kafka/topic_source.py`,
`ces/adapters/postgres/replay_target.py`); the terminal views are in `ces/cli/replay_view.py`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Protocol

from ces.events.base import Event
from ces.projections.rate_rows import Refusal
from ces.projections.replay.model import Partition, Prepared, PreparedBatch, Record, Written

# A record's value -> its rows, or None when its bytes are not in the one layout the target reads (decode it).
Preparer = Callable[[bytes], Prepared | None]
# A batch of one topic's records' values -> all their rows, or None (then each goes its `Preparer`'s way).
Batcher = Callable[[list[bytes]], PreparedBatch | None]


class EventSource(Protocol):
    """Reads a topic's partitions from given offsets, outside any consumer group (nothing committed).

    Used as an async context manager: connections are made on entry, inside the replay's event loop.
    """

    async def __aenter__(self) -> EventSource: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def partitions(self, topics: Sequence[str]) -> list[Partition]:
        """Every partition of each topic, in topic then partition order; `ReplayError` if a topic is missing."""
        ...

    async def end_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]: ...

    async def beginning_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]: ...

    async def offsets_for_time(self, partitions: Sequence[Partition], since: datetime) -> dict[Partition, int | None]:
        """The first offset at or after `since` per partition; None where there is none."""
        ...

    def seek(self, starts: Mapping[Partition, int]) -> None:
        """Read exactly these partitions from now on, each from its offset."""
        ...

    async def fetch(self, partitions: Sequence[Partition], max_records: int) -> list[Record]:
        """Up to `max_records` records of these partitions (waiting up to about a second for some, then briefly
        for more while fewer than `max_records` came)."""
        ...

    async def position(self, partition: Partition) -> int:
        """The offset the next fetch reads: it steps over offsets that hold no record (transaction markers)."""
        ...

    def pause(self, partition: Partition) -> None: ...


class ReplayTarget(Protocol):
    """The fresh schema the projections are rebuilt into, with its checkpoints. Blocking calls."""

    def live_schemas(self) -> set[str]:
        """Schemas the target must never be: where the live workers write."""
        ...

    def exclusive(self) -> AbstractContextManager[None]:
        """One replay per target at a time; `ReplayError` if another one holds it."""
        ...

    def prepare(self, *, restart: bool) -> bool:
        """Create (or adopt, or with `restart` recreate) the schema; True when resuming a replay's target."""
        ...

    def defer_constraints(self) -> int:
        """Fresh target only: drop what costs per-row work during the load (foreign keys, secondary indexes),
        remembering it in the target; returns how many."""
        ...

    def restore_constraints(self) -> int:
        """Add back whatever is still deferred (none: 0); `ReplayError` naming the rows if one does not hold."""
        ...

    def has_rates(self) -> bool: ...

    def load_checkpoints(self) -> dict[Partition, int]: ...

    def save_checkpoints(self, offsets: Mapping[Partition, int]) -> None:
        """The offsets on their own, in one transaction."""
        ...

    def preparer(self, phase: str, carried: tuple[type[Event], ...]) -> Preparer | None:
        """For a topic carrying the event classes `carried`: a reader that turns a record straight into this
        target's rows (the rows `write` makes of the decoded event, and only for bytes the decoder accepts),
        or None when the target has none."""
        ...

    def batcher(self, phase: str, carried: tuple[type[Event], ...]) -> Batcher | None:
        """Like `preparer`, for the records of such a topic in one fetched batch at once: one `PreparedBatch`
        with the rows `write` makes of them, whose keys are distinct; or None when the target has none."""
        ...

    def write(self, phase: str, events: Sequence[Written], offsets: Mapping[Partition, int] | None) -> list[Refusal]:
        """The batch's rows and `offsets` as its checkpoint, in one transaction, or nothing at all.

        Returns the events the projection refuses itself; raises `BatchRefused` when the database refuses
        the batch (a constraint), having written neither rows nor checkpoint.
        """
        ...

    def count_rows(self, projection: str) -> dict[str, int]: ...

    def close(self) -> None: ...


class ProgressSink(Protocol):
    def begin(self, phase: str, total: int) -> None: ...

    def advance(self, phase: str, done: int) -> None: ...

    def end(self, phase: str) -> None: ...
