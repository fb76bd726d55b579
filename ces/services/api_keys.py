"""Gateway API keys: minting (shown once, only a hash kept), verifying with a short cache, scopes, rate limits.

A key is `ces_` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored: the keys are random,
so a slow password hash adds nothing but latency on every request. Verification caches what the store said
for `cache_seconds` (default 10 s), so a revoked key stops working within that time on every gateway. A key in
use is looked up again in the background before its entry expires, once however many requests use it, so its
requests never wait for the store (`KeyVerifier.check`).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

KEY_PREFIX = "ces_"


class Scope(StrEnum):
    CONVERT = "convert"  # POST /v1/conversions
    READ = "read"  # GET of conversions, audits and rates


@dataclass(frozen=True)
class ApiKey:
    id: UUID
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def parse_scopes(text: str) -> frozenset[Scope]:
    """`"convert,read"` -> scopes; an unknown or empty scope list is a `ValueError` naming the valid ones."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    valid = ", ".join(s.value for s in Scope)
    if not names:
        raise ValueError(f"no scope given (valid: {valid})")
    try:
        return frozenset(Scope(name) for name in names)
    except ValueError:
        raise ValueError(f"unknown scope in {text!r} (valid: {valid})") from None


class ApiKeyStore(Protocol):
    def add(self, name: str, scopes: frozenset[Scope], digest: bytes) -> ApiKey:
        """Store a new key by its hash; a name in use raises `KeyNameTaken`."""

    def find(self, digest: bytes) -> ApiKey | None: ...

    def all(self) -> Sequence[ApiKey]: ...

    def revoke(self, key_id: UUID) -> ApiKey | None:
        """Mark the key revoked (kept, never deleted); None when no such key."""


class KeyNameTaken(ValueError):
    pass


def create_key(store: ApiKeyStore, name: str, scopes: frozenset[Scope]) -> tuple[ApiKey, str]:
    """Mint a key: returns the stored record and the secret, which exists nowhere else afterwards."""
    if not name.strip() or len(name) > 100 or not name.isprintable():
        raise ValueError("a key's name must be 1-100 printable characters")
    secret = new_secret()
    return store.add(name.strip(), scopes, key_hash(secret)), secret


class KeyVerifier:
    """Secret -> active key or None, asking the store at most once per `cache_seconds` per secret.

    Blocking (the store is PostgreSQL): `verify` asks it; the gateway calls `check`, which asks it in a thread.
    """

    def __init__(
        self,
        store: ApiKeyStore,
        *,
        cache_seconds: float = 10.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._cache: dict[bytes, tuple[float, ApiKey | None]] = {}
        # Store lookups under way, by digest: the requests that miss together share one (see `check`).
        self._lookups: dict[bytes, asyncio.Task[ApiKey | None]] = {}

    async def check(self, secret: str) -> ApiKey | None:
        """`verify` for the gateway: a cached answer without waiting; on a miss one store lookup (in a thread) for
        all the requests that miss together. An entry used in the last quarter of its `cache_seconds` starts its
        next lookup in the background and is served meanwhile: a key in use never makes its requests wait, and
        a request that waited would be published apart from the ones beside it (docs/http.md, "The lease's
        call ahead"). The revocation bound is unchanged: an entry is never served past `cache_seconds`."""
        digest = key_hash(secret)
        entry = self._cache.get(digest)
        if entry is not None:
            age = self.clock() - entry[0]
            if age < self.cache_seconds:
                if age >= 0.75 * self.cache_seconds and digest not in self._lookups:
                    self._look_up(digest, secret)
                return entry[1]
        lookup = self._lookups.get(digest) or self._look_up(digest, secret)
        return await asyncio.shield(lookup)  # a caller that goes away does not cancel the others' lookup

    def _look_up(self, digest: bytes, secret: str) -> asyncio.Task[ApiKey | None]:
        task = asyncio.create_task(asyncio.to_thread(self._ask, digest, secret))
        self._lookups[digest] = task

        def done(task: asyncio.Task[ApiKey | None]) -> None:
            if self._lookups.get(digest) is task:
                del self._lookups[digest]
            if not task.cancelled():
                task.exception()  # retrieved: a background lookup's failure is the next miss's to report

        task.add_done_callback(done)
        return task

    def verify(self, secret: str) -> ApiKey | None:
        """Ask the store. When the store fails, a key verified before keeps its last answer (stale if error):
        a PostgreSQL outage must not lock out every caller; one never verified gets the store's error."""
        return self._ask(key_hash(secret), secret)

    def _ask(self, digest: bytes, secret: str) -> ApiKey | None:
        """`verify` with the secret's digest already computed (`check` has it)."""
        try:
            found = self.store.find(digest) if secret.startswith(KEY_PREFIX) else None
        except Exception:
            stale = self._cache.get(digest)
            if stale is None:
                raise
            return stale[1]
        key = found if found is not None and found.active else None
        if len(self._cache) >= self.max_entries:
            self._cache.clear()  # bounded memory: a flood of random keys cannot grow it
        self._cache[digest] = (self.clock(), key)
        return key


class RateLimiter(Protocol):
    async def take(self, key_id: UUID, cost: int = 1) -> float:
        """Take `cost` tokens from the key's bucket: 0 when allowed, else the seconds until they are available.

        A cost above the burst is allowed when the bucket is full and leaves it in debt (negative): the
        key then waits until the debt is paid off, so over time every token is paid for."""
