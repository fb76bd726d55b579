"""Live rate updates fanned out to many listeners, each with a bounded queue: a slow listener never blocks others.

`publish` never waits. When a listener's queue is full the update is dropped for that listener only and
counted; the listener reads the count with its next update (`Update.dropped`), so a client learns that it
missed updates and can reload what it shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from ces.domain.rates import Rate

DEFAULT_QUEUE_SIZE = 256


@dataclass(frozen=True)
class Update:
    """Rates that landed together, and how many updates this listener missed before them."""

    rates: tuple[Rate, ...]
    dropped: int = 0


class Listener:
    def __init__(self, queue_size: int) -> None:
        self.queue: asyncio.Queue[Update] = asyncio.Queue(maxsize=queue_size)
        self.dropped = 0

    def offer(self, update: Update) -> bool:
        try:
            self.queue.put_nowait(update)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    async def next(self, timeout: float) -> Update | None:
        """The next update, carrying how many were dropped since the previous one; None after `timeout` s."""
        try:
            update = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        dropped, self.dropped = self.dropped, 0
        return Update(update.rates, dropped) if dropped else update


class RateBroadcast:
    """The listeners of one gateway process."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE, max_listeners: int = 1000) -> None:
        self.queue_size = queue_size
        self.max_listeners = max_listeners
        self.listeners: set[Listener] = set()
        self.published = 0
        self.dropped = 0

    def subscribe(self) -> Listener | None:
        """A new listener, or None when `max_listeners` are listening."""
        if len(self.listeners) >= self.max_listeners:
            return None
        listener = Listener(self.queue_size)
        self.listeners.add(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def publish(self, rates: Iterable[Rate]) -> None:
        update = Update(tuple(rates))
        if not update.rates:
            return
        self.published += 1
        for listener in self.listeners:
            if not listener.offer(update):
                self.dropped += 1
