"""Name-based ids (RFC 4122 version 5): the deterministic ids every idempotent handler rests on."""

from __future__ import annotations

from hashlib import sha1
from uuid import UUID

# Version 5 in the top nibble of time_hi_and_version, the RFC 4122 variant (0b10) in clock_seq_hi.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (5 << 76) | (0x8000 << 48)


class NameBasedIds:
    """`uuid.uuid5(namespace, name)` for one namespace, about 3x cheaper per call: `uuid5` imports hashlib,
    hashes the namespace again and builds its UUID from bytes on every call, and the worker derives two ids
    per conversion, the backfill two per rate (tests/unit/test_ids.py holds both forms equal to `uuid5`)."""

    __slots__ = ("_fed",)

    def __init__(self, namespace: UUID) -> None:
        self._fed = sha1(namespace.bytes, usedforsecurity=False)  # copied per id: cheaper than feeding it again

    def _digest(self, name: str) -> bytes:
        sha = self._fed.copy()
        sha.update(name.encode())
        return sha.digest()

    def __call__(self, name: str) -> UUID:
        return UUID(int=(int.from_bytes(self._digest(name)[:16]) & _CLEAR) | _SET)

    def text(self, name: str) -> str:
        """`str(self(name))` without the UUID object."""
        digest = bytearray(self._digest(name)[:16])
        digest[6], digest[8] = (digest[6] & 0x0F) | 0x50, (digest[8] & 0x3F) | 0x80
        h = digest.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
