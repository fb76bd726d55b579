"""Name-based ids (RFC 4122 version 5): the deterministic ids every idempotent handler rests on."""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import sha1
from uuid import UUID

# Version 5 in the top nibble of time_hi_and_version, the RFC 4122 variant (0b10) in clock_seq_hi.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (5 << 76) | (0x8000 << 48)
# The variant's hex digit for the digest's 17th hex digit: its top two bits become 0b10.
_VARIANT_DIGIT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


class NameBasedIds:
    """`uuid.uuid5(namespace, name)` for one namespace, about 3x cheaper per call: `uuid5` imports hashlib,
    hashes the namespace again and builds its UUID from bytes on every call, and the worker derives two ids
    per conversion, the backfill two per rate (tests/unit/test_ids.py holds both forms equal to `uuid5`)."""

    __slots__ = ("_fed",)

    def __init__(self, namespace: UUID) -> None:
        self._fed = sha1(namespace.bytes, usedforsecurity=False)  # copied per id: cheaper than feeding it again

    def prefixed(self, prefix: str) -> NameBasedIds:
        """The ids of names that start with `prefix`: `prefixed(p)(n) == self(p + n)`, the prefix hashed once
        (the backfill names thousands of rates of one publication, `rate|ecb|<instant>|EUR|<target>`)."""
        ids = NameBasedIds.__new__(NameBasedIds)
        ids._fed = self._fed.copy()
        ids._fed.update(prefix.encode())
        return ids

    def _digest(self, name: str) -> bytes:
        sha = self._fed.copy()
        sha.update(name.encode())
        return sha.digest()

    def __call__(self, name: str) -> UUID:
        return UUID(int=(int.from_bytes(self._digest(name)[:16]) & _CLEAR) | _SET)

    def text(self, name: str) -> str:
        """`str(self(name))` without the UUID object: the digest's hex with the version and variant digits set."""
        h = self._digest(name).hex()
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"

    def texts(self, names: Iterable[str]) -> list[str]:
        """`[self.text(name) for name in names]` in one loop: the backfill derives 443,404 ids, and the two
        calls per id were a third of their cost."""
        fed, variant = self._fed, _VARIANT_DIGIT
        texts = []
        for name in names:
            sha = fed.copy()
            sha.update(name.encode())
            h = sha.hexdigest()
            texts.append(f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:32]}")
        return texts
