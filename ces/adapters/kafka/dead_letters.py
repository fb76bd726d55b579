"""Dead letters: a message CES cannot process goes, byte for byte, to `ces-dead-letters` with the reason.

The dead letter's key and value are the original's, unchanged (no re-encoding, no size inflation);
what went wrong and where the message came from travel in headers:
`ces.dlq.reason` (stable code), `ces.dlq.error` (detail), `ces.dlq.source.topic`,
`ces.dlq.source.partition`, `ces.dlq.source.offset`, `ces.dlq.at` (RFC 3339).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ces.events.base import printable, rfc3339, utc_now
from ces.metrics import DEAD_LETTERS
from ces.services.ports import Received

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
Send = Callable[[bytes | None, bytes, Headers], Awaitable[None]]


class DeadLetters:
    def __init__(self, send: Send) -> None:
        self._send = send

    async def publish(self, message: Received, reason: str, detail: str) -> None:
        headers: Headers = [
            ("ces.dlq.reason", reason.encode()),
            ("ces.dlq.error", printable(detail[:2000]).encode()),
            ("ces.dlq.source.topic", message.topic.encode()),
            ("ces.dlq.source.partition", str(message.partition).encode()),
            ("ces.dlq.source.offset", str(message.offset).encode()),
            ("ces.dlq.at", rfc3339(utc_now()).encode()),
        ]
        await self._send(message.key, message.value, headers)
        DEAD_LETTERS.labels(message.topic, reason).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
            printable(detail[:500]),
        )
