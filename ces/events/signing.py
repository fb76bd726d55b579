"""The gateway's signature on the requests it produces: a request's `requested_by` is believed only when signed.

Any principal allowed to write `conversion-requests` (an outside producer, `ces-producer`) can put any API key
id in `requested_by`; the audit records it as "who asked". So the gateway signs every request it produces with
a secret only it and the worker hold (`CES_REQUEST_SIGNING_KEY`), and the worker rejects a request that names a
`requested_by` without a valid signature (`unauthenticated_requester`). Requests without `requested_by` need
no signature.

The signature travels in a Kafka record header (`SIGNATURE_HEADER`), not in the event, so the wire schema is
unchanged. Header value: `v1:<key id>:<hex HMAC-SHA256>` in ASCII, where the key id (8 hex) names which key
signed, so a worker that accepts several keys (rotation) computes one MAC, not one per key. The MAC is over
`CANONICAL_PREFIX + <the record's value bytes>`: the exact bytes the worker parses, so every field is bound
(`request_id`, `requested_by`, currencies, amount, `event_id`, version) with no canonicalisation to get wrong.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

from ces.settings import MIN_SIGNING_KEY_CHARS as MIN_KEY_CHARS

SIGNATURE_HEADER = "ces-signature"
CANONICAL_PREFIX = b"ces.conversion-request.v1\x00"
_VERSION = b"v1"
_KEY_ID_PREFIX = b"ces.request-signing-key-id\x00"
_HEX = frozenset(b"0123456789abcdef")


def key_id(key: bytes) -> bytes:
    """A short, public name for a key: not the key, and not enough of a MAC to help guess it."""
    return hashlib.sha256(_KEY_ID_PREFIX + key).hexdigest()[:8].encode()


class RequestSigner:
    """Signs the value bytes of a request record (the gateway)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"a request signing key needs at least {MIN_KEY_CHARS} characters")
        self._key = key
        self._head = _VERSION + b":" + key_id(key) + b":"

    def __repr__(self) -> str:
        return f"RequestSigner(key_id={key_id(self._key).decode()})"

    def sign(self, value: bytes) -> bytes:
        return self._head + hmac.new(self._key, CANONICAL_PREFIX + value, hashlib.sha256).hexdigest().encode()


class RequestVerifier:
    """Checks a request's signature against every accepted key (the current one and those still accepted
    during a rotation). With no key at all, nothing verifies: a claim of `requested_by` is always refused."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self._keys = {key_id(key): key for key in keys if key}

    def __repr__(self) -> str:
        return f"RequestVerifier(key_ids={sorted(k.decode() for k in self._keys)})"

    @property
    def key_ids(self) -> list[str]:
        return [k.decode() for k in self._keys]

    def failure(self, value: bytes, header: bytes | None) -> str | None:
        """None when `header` is a valid signature of `value`; else why not (`missing`, `malformed`,
        `unknown_key`, `mismatch`): for the rejection's message and a metric, never a secret."""
        if header is None:
            return "missing"
        # v1:<8 hex>:<64 hex> is exactly 76 bytes; anything else is refused before any hashing.
        if len(header) != 76 or header[:3] != b"v1:" or header[11:12] != b":":
            return "malformed"
        key = self._keys.get(header[3:11])
        if key is None:
            return "unknown_key" if _is_hex(header[3:11]) else "malformed"
        expected = hmac.new(key, CANONICAL_PREFIX + value, hashlib.sha256).hexdigest().encode()
        # Constant time: a forger learns nothing from how long a wrong guess took to refuse.
        return None if hmac.compare_digest(expected, header[12:]) else "mismatch"


def signature_of(headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    """The signature header's value; None when absent. Two signature headers are ambiguous: refused."""
    found: bytes | None = None
    for name, value in headers:
        if name == SIGNATURE_HEADER:
            if found is not None or not isinstance(value, bytes):
                return b""  # malformed: never verifies
            found = value
    return found


def _is_hex(text: bytes) -> bool:
    return all(c in _HEX for c in text)
