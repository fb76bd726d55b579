"""Upcasters: small pure functions that lift an old payload one schema version, applied when decoding.

Old events on the topics are never rewritten. Register `(event_type, from_version) -> function`; the
function receives the payload dict at `from_version` and returns it at `from_version + 1`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def upcast(payload: Payload, current_version: int) -> Payload:
    event_type = payload.get("event_type")
    version = payload.get("schema_version", 1)
    while isinstance(event_type, str) and isinstance(version, int) and version < current_version:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise ValueError(f"no upcaster for {event_type} v{version}")
        payload = {**step(payload), "schema_version": version + 1}
        version += 1
    return payload


@upcaster("RateFetched", 0)
def _rate_fetched_v0(payload: Payload) -> Payload:
    # v0 (pre-release) called the provider `source` and had no fetch_id; keep such payloads readable.
    result = dict(payload)
    if "source" in result:
        result["provider_name"] = result.pop("source")
    result.setdefault("fetch_id", result.get("rate_id"))
    return result


@upcaster("ConversionRequested", 1)
@upcaster("ConversionAudited", 1)
@upcaster("ConversionRejected", 1)
def _conversion_v1(payload: Payload) -> Payload:
    # v2 records who asked (`requested_by`, a gateway API key id); v1 events predate keys: nobody known.
    return {**payload, "requested_by": None}


@upcaster("ConversionRequested", 2)
@upcaster("ConversionAudited", 2)
@upcaster("ConversionRejected", 2)
def _conversion_v2(payload: Payload) -> Payload:
    # v3 can price at a past moment (`as_of`); a v2 event was priced at the rates current when decided.
    return {**payload, "as_of": None}
