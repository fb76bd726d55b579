"""The one port for publishing events, whatever the producer behind it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ces.events.base import Event


class EventPublisher(Protocol):
    async def publish(self, events: Sequence[Event]) -> None:
        """Return once the broker acknowledged every event (each to its own topic, by its key)."""
