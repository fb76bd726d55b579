"""Decoding bytes into events by their `event_type`, through the upcasters, with a reason on failure."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ces.events import canonical
from ces.events.base import Event, printable
from ces.events.conversions import ConversionAudited, ConversionRejected, ConversionRequested
from ces.events.rates import RateFetched, RateFetchFailed, RateRevoked
from ces.events.upcasters import upcast

EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["event_type"].default: cls
    for cls in (RateFetched, RateFetchFailed, RateRevoked, ConversionRequested, ConversionAudited, ConversionRejected)
}


class UndecodableEvent(ValueError):
    """The bytes are not a valid event; `reason` is short and stable enough to count and dead-letter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def register(cls: type[Event]) -> type[Event]:
    EVENT_TYPES[cls.model_fields["event_type"].default] = cls
    return cls


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated name ({"amount": "1", "amount": "1000"}) means different things to different parsers
    # (first wins, last wins, error): refused, so CES never reads a request otherwise than its producer.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:40]!r}")
            seen.add(key)
    return result


# Built once: `json.loads(raw, object_pairs_hook=...)` builds a new decoder on every call (a tenth of the
# replay's decoding time). `_loads` is `json.loads` step for step: the same encoding detection, the same
# `surrogatepass` decoding, the same scanner and the same errors around it, so it accepts and refuses
# exactly the same bytes (tests/unit/test_decoder_equivalence.py compares it with `json.loads`).
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]  # untyped
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # json.decoder.WHITESPACE: JSON's four whitespace characters


def lone_surrogate_in(value: Any) -> bool:
    """Whether any string (key or value) of a decoded JSON value holds a lone UTF-16 surrogate.

    Iterative: a value nested as deep as the JSON reader allows must not exhaust the stack here."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if canonical.SURROGATE.search(item) is not None:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _after_whitespace(text: str, at: int) -> int:
    match = _WHITESPACE.match(text, at)
    assert match is not None  # `*` matches the empty string too
    return match.end()


def _loads(raw: bytes | bytearray) -> Any:
    # `json.detect_encoding` answers "utf-8" for every text starting `{` and then a non-zero byte (no BOM
    # starts with `{`; a zero second byte means UTF-16/32): an event, almost always. Asked otherwise.
    if raw[:1] == b"{" and raw[1:2] != b"\x00":
        text = raw.decode("utf-8", "surrogatepass")
    else:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    # `JSONDecoder.decode` and `raw_decode` inlined: the same whitespace rule, the same two errors.
    start = 0 if text[:1] == "{" else _after_whitespace(text, 0)
    try:
        value, end = _SCAN(text, start)
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    if end != len(text):
        end = _after_whitespace(text, end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    return value


@functools.cache
def _defaults(cls: type[Event]) -> tuple[str, int]:
    """The class's `event_type` and current `schema_version` (pydantic's `model_fields` costs per access)."""
    return cls.model_fields["event_type"].default, cls.model_fields["schema_version"].default


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Any bytes -> a JSON object, or `UndecodableEvent`; nothing else escapes. Besides malformed JSON
    and invalid UTF-8 this covers integers too long to convert (ValueError), nesting deeper than the
    interpreter's recursion limit (RecursionError) and repeated keys."""
    if not isinstance(raw, bytes | bytearray):  # a tombstone (null value) reaches here as None
        raise UndecodableEvent("invalid_json", f"expected bytes, got {type(raw).__name__}")
    try:
        payload = _loads(raw)
    except (ValueError, RecursionError) as exc:
        raise UndecodableEvent("invalid_json", printable(f"{type(exc).__name__}: {exc}")[:200]) from exc
    if not isinstance(payload, dict):
        raise UndecodableEvent("not_an_object", f"expected a JSON object, got {type(payload).__name__}")
    return payload


def validation_detail(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in errors)[:500]


def decode(raw: bytes, expected: type[Event] | tuple[type[Event], ...] | None = None) -> Event:
    """`expected`: the event type(s) the topic carries; a payload without `event_type` is the first one."""
    allowed = (expected,) if isinstance(expected, type) else expected
    if type(raw) is bytes:
        # Bytes in the layout `to_json()` writes (almost all of them): read without pydantic's Python
        # validators, to the same event. Anything else, or an event of a type not expected here, is
        # decoded (or refused) in full below.
        event = canonical.read(raw, EVENT_TYPES)
        if event is not None and (not allowed or type(event) in allowed):
            return event
    payload = parse_json_object(raw)
    # `"\\ud800"` (or surrogate bytes, which JSON readers pass) is valid JSON but no Unicode character:
    # PostgreSQL, `to_json()` and every UTF-8 encoder refuse it later, where it would fail a whole batch
    # instead of one message. An event is text of record: refused here, as malformed. (The canonical path
    # above declines such strings, so only this path needs the check.) Only an escape (a backslash byte, in
    # any of JSON's encodings) or a non-ASCII byte can make one: the walk is for those bytes alone.
    if (b"\\" in raw or not raw.isascii()) and lone_surrogate_in(payload):
        raise UndecodableEvent("invalid_json", "a string holds a lone UTF-16 surrogate, not a Unicode character")
    event_type = payload.get("event_type")
    if allowed and event_type is None:
        event_type = _defaults(allowed[0])[0]
        payload["event_type"] = event_type
    cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if cls is None:
        raise UndecodableEvent("unknown_event_type", f"event_type {event_type!r}")
    if allowed and cls not in allowed:
        names = " or ".join(c.__name__ for c in allowed)
        raise UndecodableEvent("unexpected_event_type", f"{event_type} where {names} belongs")
    current = _defaults(cls)[1]
    version = payload.get("schema_version", current)
    if not isinstance(version, int) or version > current or version < 0:
        raise UndecodableEvent("unsupported_schema_version", f"{event_type} v{version!r}")
    try:
        payload = upcast(payload, current)
        return cls.model_validate(payload)
    except ValidationError as exc:
        raise UndecodableEvent("invalid_event", printable(validation_detail(exc))) from exc
    except Exception as exc:  # untrusted input: whatever validation raises (OverflowError, ...) is about it
        raise UndecodableEvent("invalid_event", printable(f"{type(exc).__name__}: {exc}")[:500]) from exc
