"""What projecting rate events yields, and the port that does it: rows inserted, refusals, withdrawals.

The rate projection (`rate_projection.py`) owns this contract; `ces.adapters.postgres.rate_projector` meets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, overload
from uuid import UUID

from ces.domain.rates import Rate, Withdrawal
from ces.events.rates import RateFetched, RateRevoked
from ces.projections.rate_wire import RateRow, rate_of_row

# A `RateFetched` comes decoded, or as its row when its bytes were canonical (`rate_wire.read_row`).
RateEvent = RateFetched | RateRow | RateRevoked
T = TypeVar("T")

# Stable reasons for the events the projection refuses (dead-letter reasons, metric labels; docs/rates.md).
IMPLAUSIBLE_PUBLISHED_AT = "implausible_published_at"
SAME_CURRENCY_PAIR = "same_currency_pair"
CONFLICTING_REPUBLICATION = "conflicting_republication"
UNDERIVED_EVENT_ID = "underived_event_id"
UNKNOWN_RATE = "unknown_rate"


def rate_of(event: RateFetched) -> Rate:
    return Rate(
        rate_id=event.rate_id,
        base_currency=event.base_currency,
        target_currency=event.target_currency,
        rate_value=event.rate_value,
        provider_name=event.provider_name,
        published_at=event.published_at,
        fetched_at=event.fetched_at,
    )


class _Lazy(Sequence[T]):
    """Items held as they came and converted (`_convert`) when first read, then kept converted."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items = list(items)

    def _convert(self, item: Any) -> T:
        raise NotImplementedError

    def append(self, item: Any) -> None:
        self._items.append(item)

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._items)))]
        item = self._items[index] = self._convert(self._items[index])
        return item

    def __iter__(self) -> Iterator[T]:
        return (self[i] for i in range(len(self._items)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class CurrentRates(_Lazy[Rate]):
    """Rates, each held as its row until it is read: a batch of history holds dozens of rates of each pair,
    and the cache reads only each pair's newest (`newest_first`), so the others never become `Rate`s."""

    def _convert(self, item: Rate | RateRow) -> Rate:
        return rate_of_row(item) if isinstance(item, RateRow) else item

    def newest_first(self) -> list[Sequence[Rate]]:
        """Per pair, its rates newest first (published_at, then fetched_at; among equals the first here):
        the order in which `RateCache.put_newest` offers them."""
        by_pair: dict[tuple[str, str], list[tuple[object, object, int]]] = {}
        for i, item in enumerate(self._items):
            by_pair.setdefault((item.base_currency, item.target_currency), []).append(
                (item.published_at, item.fetched_at, -i)
            )
        return [CurrentRates([self._items[-k[2]] for k in sorted(keys, reverse=True)]) for keys in by_pair.values()]


class RateIds(_Lazy[UUID]):
    """Rate ids, each held as its text until it is read (the projection mostly only counts them)."""

    def _convert(self, item: UUID | str) -> UUID:
        return UUID(item) if isinstance(item, str) else item


@dataclass(frozen=True)
class Refusal:
    """An event the projection will not apply, whatever the retries: `index` is its place in the batch."""

    index: int
    reason: str
    detail: str


@dataclass
class Projection:
    """What one batch did. `current` holds, for the cache, the rows PostgreSQL holds for the accepted
    `RateFetched` events, revoked rows left out: the cache never sees a value PostgreSQL does not have."""

    inserted: RateIds = field(default_factory=RateIds)
    revocations_inserted: list[UUID] = field(default_factory=list)
    current: CurrentRates = field(default_factory=CurrentRates)
    withdrawals: list[Withdrawal] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


class RateRows(Protocol):
    def project(self, events: Sequence[RateEvent]) -> Projection:
        """Apply a batch in one transaction (idempotent); database errors propagate to the caller's policy."""
