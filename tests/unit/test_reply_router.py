"""The gateway's result reader survives any bytes on the decision topics and resolves only real results."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.replies import ReplyRouter
from ces.events.conversions import ConversionRejected
from ces.services.ports import REPUBLISHED_HEADER

NASTY: list[bytes | None] = [
    None,  # a tombstone
    b"",
    b"\xff\xfe",
    b"[" * 5000 + b"]" * 5000,
    b'{"event_type": "ConversionRejected", "request_id": ' + b"9" * 5000 + b"}",
    b'{"event_type": "ConversionAudited", "schema_version": 99}',
    b'{"event_type": "RateFetched"}',
]


@pytest.mark.parametrize("value", NASTY)
async def test_garbage_for_a_waiting_request_is_skipped_and_the_real_result_still_resolves(value: bytes | None) -> None:
    router = ReplyRouter(KafkaConnection("127.0.0.1:9"), ["results"], max_pending=10)
    request_id = uuid.uuid4()
    waiter = router.expect(request_id)
    router._route(str(request_id).encode(), value)
    router._route(b"\xff" * 100, value)
    assert not waiter.done()

    result = ConversionRejected(request_id=request_id, reason="no_rate", message="none", rejected_at=datetime.now(UTC))
    router._route(str(request_id).encode(), result.to_json())
    assert waiter.done() and waiter.result() == (result, False)


async def test_the_republished_header_marks_the_result_as_a_replay() -> None:
    router = ReplyRouter("127.0.0.1:9", ["results"], max_pending=10)
    fresh, repeated = uuid.uuid4(), uuid.uuid4()
    waiters = {rid: router.expect(rid) for rid in (fresh, repeated)}
    results = {
        rid: ConversionRejected(request_id=rid, reason="no_rate", message="none", rejected_at=datetime.now(UTC))
        for rid in (fresh, repeated)
    }
    router._route(str(fresh).encode(), results[fresh].to_json(), [("other", b"x")])
    router._route(str(repeated).encode(), results[repeated].to_json(), [(REPUBLISHED_HEADER, b"1")])
    assert waiters[fresh].result() == (results[fresh], False)
    assert waiters[repeated].result() == (results[repeated], True)
