"""Decoding bytes into events by their `event_type`, through the upcasters, with a reason on failure."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from ces.events.base import Event, printable
from ces.events.conversions import ConversionAudited, ConversionRejected, ConversionRequested
from ces.events.rates import RateFetched, RateFetchFailed
from ces.events.upcasters import upcast

EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["event_type"].default: cls
    for cls in (RateFetched, RateFetchFailed, ConversionRequested, ConversionAudited, ConversionRejected)
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


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Any bytes -> a JSON object, or `UndecodableEvent`; nothing else escapes. Besides malformed JSON
    and invalid UTF-8 this covers integers too long to convert (ValueError) and nesting deeper than the
    interpreter's recursion limit (RecursionError)."""
    if not isinstance(raw, bytes | bytearray):  # a tombstone (null value) reaches here as None
        raise UndecodableEvent("invalid_json", f"expected bytes, got {type(raw).__name__}")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise UndecodableEvent("invalid_json", printable(f"{type(exc).__name__}: {exc}")[:200]) from exc
    if not isinstance(payload, dict):
        raise UndecodableEvent("not_an_object", f"expected a JSON object, got {type(payload).__name__}")
    return payload


def validation_detail(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in errors)[:500]


def decode(raw: bytes, expected: type[Event] | None = None) -> Event:
    payload = parse_json_object(raw)
    event_type = payload.get("event_type")
    if expected is not None and event_type is None:
        event_type = expected.model_fields["event_type"].default
        payload["event_type"] = event_type
    cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if cls is None:
        raise UndecodableEvent("unknown_event_type", f"event_type {event_type!r}")
    if expected is not None and cls is not expected:
        raise UndecodableEvent("unexpected_event_type", f"{event_type} where {expected.__name__} belongs")
    current = cls.model_fields["schema_version"].default
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
