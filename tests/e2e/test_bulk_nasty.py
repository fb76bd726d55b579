"""Bulk conversions under attack, end to end on a real gateway and worker: an id reused with other fields, the
same batch twice at once, and bodies that lie about their type, their encoding or their size."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text

from tests.e2e.conftest import Isolation, RunningProcess, StartCes
from tests.e2e.test_bulk import BATCH, decision_rows, item, post_batch
from tests.e2e.test_gateway import session_for, start_gateway

MIB = 1024 * 1024


def test_an_id_reused_with_other_fields_is_a_conflict_in_its_slot_and_twin_batches_get_one_decision_each(
    running: RunningProcess,
    start_ces: StartCes,
    isolation: Isolation,
    worker_env: dict[str, str],
) -> None:
    url = start_gateway(start_ces, worker_env)
    earlier = item("EUR", "USD", "10.00")
    reused = {**earlier, "amount": "11.00"}  # the same id, another conversion
    twins = [item("EUR", "USD", f"{n}.00") for n in range(1, 21)]

    async def run() -> tuple[Any, Any, list[tuple[int, Any, str]]]:
        async with session_for(url) as session:
            async with session.post(f"{url}/v1/conversions", json=earlier) as single:
                first = (single.status, await single.json())
            conflict = await post_batch(session, url, {"items": [item("EUR", "USD", "1.00"), reused]})
            both = await asyncio.gather(*(post_batch(session, url, {"items": twins}) for _ in range(2)))
            return first, conflict, list(both)

    (single_status, _), (status, answer, _), both = asyncio.run(run())
    assert single_status == 201 and status == 200
    assert [r["outcome"] for r in answer["results"]] == ["audited", "refused"]
    slot = answer["results"][1]
    assert (slot["status"], slot["problem"]["code"]) == (409, "idempotency_conflict"), slot
    assert [s for s, _, _ in both] == [200, 200]
    conversions = [[r.get("conversion") for r in body["results"]] for _, body, _ in both]
    assert conversions[0] == conversions[1] and all(c is not None for c in conversions[0])
    # Every twin decided once: one request row and one audit per id, and one of each pair a replay.
    ids = [t["request_id"] for t in twins]
    assert decision_rows(isolation, ids) == {rid: ("audited", 1) for rid in ids}
    with isolation.engine.connect() as conn:
        amount = conn.execute(
            text("SELECT input_amount::text FROM conversion_audit WHERE request_id::text = :rid"),
            {"rid": earlier["request_id"]},
        ).scalar_one()
    assert amount == "10.00"  # the reuse changed nothing


def test_bodies_that_lie_about_type_encoding_or_size_are_problems_never_conversions(
    running: RunningProcess,
    start_ces: StartCes,
    isolation: Isolation,
    worker_env: dict[str, str],
) -> None:
    url = start_gateway(start_ces, worker_env)
    valid = json.dumps({"items": [item("EUR", "USD", "3.00")]}).encode()
    # Decompressed, it is 5 MiB of spaces around a valid batch: over the 4 MiB limit however small on the wire.
    bomb = gzip.compress(b" " * (5 * MIB) + valid)

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    async def send(data: Any, **headers: str) -> tuple[int, str, Any]:
        async with session_for(url) as session:
            hdrs = {"Content-Type": "application/json", **headers}
            async with session.post(f"{url}{BATCH}", data=data, headers=hdrs) as response:
                return response.status, response.content_type, await response.json(content_type=None)

    async def run() -> list[tuple[int, str, Any]]:
        return [
            await send(b" " * (4 * MIB - 1)),  # whitespace under the limit: no JSON at all
            await send(b" " * (4 * MIB + 1)),
            await send(valid, **{"Content-Type": "text/plain"}),  # a JSON body calling itself text
            await send(b"items=1", **{"Content-Type": "application/x-www-form-urlencoded"}),
            await send(bomb, **{"Content-Encoding": "gzip"}),
            await send(chunks(b" " * (5 * MIB))),  # chunked: no Content-Length to refuse it early
            await send(b'{"items": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}"),  # nested past the recursion limit
        ]

    answers = asyncio.run(run())
    expected = [
        (400, "malformed_json"),
        (413, "payload_too_large"),
        (422, "invalid_request"),
        (422, "invalid_request"),
        (413, "payload_too_large"),
        (413, "payload_too_large"),
        (400, "malformed_json"),
    ]
    got = [(status, body.get("code")) for status, _, body in answers]
    assert got == expected, answers
    assert all(content_type == "application/problem+json" for _, content_type, _ in answers)
    gzipped = asyncio.run(send(gzip.compress(valid), **{"Content-Encoding": "gzip"}))
    assert gzipped[0] == 200 and gzipped[2]["counts"]["audited"] == 1, gzipped
    with isolation.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM conversion_request")).scalar_one() == 1
