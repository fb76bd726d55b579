"""`ConversionRequested.to_json()` written without pydantic's serializer: the gateway's one event per request."""

from __future__ import annotations

import re

from ces.events.base import decimal_text, rfc3339
from ces.events.conversions import ConversionRequested

_PLAIN_CODE = re.compile(r"[A-Z]{3}")


def write_request(event: ConversionRequested) -> bytes:
    """The event's `to_json()` bytes, byte for byte (tests/unit/test_request_writer.py holds it to the model), in
    one f-string: pydantic's serializer calls back into Python for the decimal and the instant, about 10 us of
    the gateway's ~15 us per request for the event. Anything not plain (a code that is not upper-case ISO, an
    `as_of`, which is free text within its pattern) goes through the model."""
    if event.as_of is not None or not (
        _PLAIN_CODE.fullmatch(event.base_currency) and _PLAIN_CODE.fullmatch(event.target_currency)
    ):
        return event.to_json()
    requested_by = "null" if event.requested_by is None else f'"{event.requested_by}"'
    return (
        f'{{"event_id":"{event.event_id}","event_type":"ConversionRequested","schema_version":3,'
        f'"occurred_at":"{rfc3339(event.occurred_at)}","request_id":"{event.request_id}",'
        f'"base_currency":"{event.base_currency}","target_currency":"{event.target_currency}",'
        f'"amount":"{decimal_text(event.amount)}","requested_by":{requested_by},"as_of":null}}'
    ).encode()
