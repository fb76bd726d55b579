"""Name-based ids (RFC 4122 version 5): the deterministic ids every idempotent handler rests on."""

from __future__ import annotations

from hashlib import sha1
from uuid import UUID

# Version 5 in the top nibble of time_hi_and_version, the RFC 4122 variant (0b10) in clock_seq_hi.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (5 << 76) | (0x8000 << 48)


class NameBasedIds:
    """`uuid.uuid5(namespace, name)` for one namespace, about 3x cheaper per call: `uuid5` imports hashlib,
    re-encodes the namespace and builds its UUID from bytes on every call, and the worker derives two or
    three ids per conversion (tests/unit/test_ids.py holds it equal to `uuid5`)."""

    __slots__ = ("_namespace",)

    def __init__(self, namespace: UUID) -> None:
        self._namespace = namespace.bytes

    def __call__(self, name: str) -> UUID:
        digest = sha1(self._namespace + name.encode(), usedforsecurity=False).digest()
        return UUID(int=(int.from_bytes(digest[:16]) & _CLEAR) | _SET)
