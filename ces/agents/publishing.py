"""Publishing CES events through the Faust app's producer (the fetch timer's output)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import faust

from ces.events.base import Event


class FaustPublisher:
    """Sends events to their topics and waits until the broker acknowledged every one."""

    def __init__(self, topics: dict[str, faust.TopicT]) -> None:
        self.topics = topics  # Event.TOPIC (unprefixed) -> Faust topic

    async def publish(self, events: Sequence[Event]) -> None:
        pending = [await self.topics[event.TOPIC].send(key=event.key(), value=event.to_json()) for event in events]
        await asyncio.gather(*pending)
