"""Bulk conversions end to end: `POST /v1/conversions/batch` on a real gateway and `ces convert` as the outside
producer, with a real worker, Kafka, PostgreSQL and Redis behind them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection
from ces.settings import Settings
from tests.e2e.conftest import Isolation, RunningProcess, StartCes
from tests.e2e.seeded import oracle
from tests.e2e.test_gateway import session_for, start_gateway
from tests.support import cli, grant_acls, role_env

BATCH = "/v1/conversions/batch"


def item(base: str, target: str, amount: str, request_id: str | None = None) -> dict[str, Any]:
    return {
        "base_currency": base,
        "target_currency": target,
        "amount": amount,
        "request_id": request_id or str(uuid.uuid4()),
    }


async def post_batch(session: aiohttp.ClientSession, url: str, data: Any) -> tuple[int, Any, str]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    async with session.post(f"{url}{BATCH}", data=raw, headers={"Content-Type": "application/json"}) as response:
        return response.status, await response.json(content_type=None), response.headers["Content-Type"]


def decision_rows(isolation: Isolation, request_ids: list[str]) -> dict[str, tuple[str, int]]:
    """request id -> (outcome, rows in its decision table) for the given ids."""
    with isolation.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT r.request_id::text AS rid, r.outcome,"
                " (SELECT count(*) FROM conversion_audit a WHERE a.request_id = r.request_id)"
                " + (SELECT count(*) FROM conversion_rejection j WHERE j.request_id = r.request_id) AS n"
                " FROM conversion_request r WHERE r.request_id::text = ANY(:ids)"
            ),
            {"ids": request_ids},
        )
        return {row.rid: (row.outcome, row.n) for row in rows}


def test_a_batch_answers_in_order_and_a_repost_returns_the_same_decisions_recorded_once(
    running: RunningProcess, start_ces: StartCes, isolation: Isolation, worker_env: dict[str, str]
) -> None:
    url = start_gateway(start_ces, worker_env)
    earlier = item("GBP", "JPY", "12.00")
    items = [
        item("EUR", "USD", "100.00"),
        {**item("EUR", "USD", "1.00"), "amount": 1},  # a JSON number: refused in its slot
        earlier,  # decided before by a single request
        item("USD", "CHF", "5.00"),  # no CHF rate: rejected by the worker
        item("USD", "ZZZ", "5.00"),  # refused by the gateway
        item("KWD", "NGN", "7.125"),
    ]

    async def run() -> tuple[Any, tuple[int, Any, str], tuple[int, Any, str]]:
        async with session_for(url) as session:
            async with session.post(f"{url}/v1/conversions", json=earlier) as single:
                first = await single.json()
            return (
                first,
                await post_batch(session, url, {"items": items}),
                await post_batch(session, url, {"items": items}),
            )

    single, (status, answer, content_type), (again_status, again, _) = asyncio.run(run())
    assert status == again_status == 200 and content_type.startswith("application/json")
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["outcome"] for r in results] == ["audited", "refused", "audited", "rejected", "refused", "audited"]
    assert [r["status"] for r in results] == [201, 422, 201, 404, 422, 201]
    assert results[1]["problem"]["code"] == "invalid_amount" and results[4]["problem"]["code"] == "unknown_currency"
    assert results[3]["problem"]["code"] == "no_rate" and results[3]["problem"]["rejected_at"]
    assert results[2]["conversion"] == single and results[2]["replayed"] is True  # the earlier single request's
    for i in (0, 2, 5):
        sent, conversion = items[i], results[i]["conversion"]
        assert conversion["request_id"] == sent["request_id"] == results[i]["request_id"]
        expected = oracle(sent["base_currency"], sent["target_currency"], Decimal(sent["amount"]))
        assert Decimal(conversion["output_amount"]) == expected
    assert answer["counts"] == {"audited": 3, "rejected": 1, "refused": 2, "undecided": 0}
    # The same batch again: the same decisions, each a replay, nothing recorded twice.
    assert [r.get("conversion") for r in again["results"]] == [r.get("conversion") for r in results]
    assert [r["replayed"] for r in again["results"] if r["outcome"] in ("audited", "rejected")] == [True] * 4
    produced = [items[i]["request_id"] for i in (0, 2, 3, 5)]
    rows = decision_rows(isolation, [i["request_id"] for i in items])
    assert rows == {
        produced[0]: ("audited", 1),
        produced[1]: ("audited", 1),
        produced[2]: ("rejected", 1),
        produced[3]: ("audited", 1),
    }


def test_nasty_batches_are_refused_whole_with_problem_details(
    running: RunningProcess, start_ces: StartCes, isolation: Isolation, worker_env: dict[str, str]
) -> None:
    url = start_gateway(start_ces, worker_env)
    twice = item("EUR", "USD", "1.00")
    many = {"items": [item("EUR", "USD", "1.00") for _ in range(10_001)]}
    cases: list[tuple[Any, int, str]] = [
        ({"items": {"base_currency": "EUR"}}, 422, "invalid_request"),  # not a list
        ({"items": []}, 422, "invalid_request"),
        (many, 413, "too_many_items"),
        ({"items": [item("EUR", "USD", "1.00"), 12, "EUR", [], None]}, 422, "invalid_request"),  # wrong types
        ({"items": [twice, item("EUR", "USD", "2.00"), twice]}, 422, "duplicate_request_id"),
        ({"items": [{**item("EUR", "USD", "1.00"), "base_currency": "E" * 5_000_000}]}, 413, "payload_too_large"),
        (b'{"items": [{"base_currency": "\xff\xfe"}]}', 400, "malformed_json"),  # not UTF-8
        (b"[" * 100_000, 400, "malformed_json"),
    ]

    async def run() -> list[tuple[int, Any, str]]:
        async with session_for(url) as session:
            return [await post_batch(session, url, data) for data, _, _ in cases]

    answers = asyncio.run(run())
    for (_, status, code), (got, problem, content_type) in zip(cases, answers, strict=True):
        assert (got, problem["code"]) == (status, code), problem
        assert content_type.startswith("application/problem+json") and problem["status"] == status
    assert answers[4][1]["duplicates"] == [twice["request_id"]]
    with isolation.engine.connect() as conn:  # nothing of any refused batch was converted
        assert conn.execute(text("SELECT count(*) FROM conversion_request")).scalar_one() == 0


def test_a_batch_bigger_than_the_burst_goes_through_and_the_key_then_waits(
    running: RunningProcess, start_ces: StartCes, worker_env: dict[str, str]
) -> None:
    url = start_gateway(start_ces, worker_env, CES_RATE_LIMIT_PER_SECOND="20", CES_RATE_LIMIT_BURST="100")
    codes = ["USD", "JPY", "GBP", "KWD"]

    async def run() -> tuple[int, Any, int, str]:
        async with session_for(url) as session:
            status, answer, _ = await post_batch(
                session, url, {"items": [item("EUR", codes[i % 4], str(i + 1)) for i in range(300)]}
            )
            async with session.post(f"{url}/v1/conversions", json=item("EUR", "USD", "1.00")) as after:
                return status, answer, after.status, after.headers.get("Retry-After", "")

    status, answer, after, retry_after = asyncio.run(run())
    assert status == 200 and answer["counts"]["audited"] == 300
    # 300 tokens taken from a bucket of 100: about 200 / 20 = 10 s of debt before the next request.
    assert after == 429 and int(retry_after) >= 5


def write_inputs(tmp_path: Path) -> tuple[Path, Path, str]:
    known = str(uuid.uuid4())
    csv_file = tmp_path / "requests.csv"
    csv_file.write_bytes(
        b"request_id,base_currency,target_currency,amount\n"
        + f"{known},EUR,USD,100.00\n".encode()
        + b",gbp,jpy,12.00\n"  # no request_id: a deterministic one; lower case as over HTTP
        + b"\n"  # blank: no request, no result
        + b",EUR,USD\n"  # a cell short
        + b",USD,ZZZ,1.00\n"  # unknown currency: refused like the gateway refuses it
        + b",\xff\xfe,USD,1.00\n"  # not UTF-8
        + b",USD,CHF,3.00\n"  # no rate: the worker's rejection
    )
    ndjson_file = tmp_path / "requests.ndjson"
    ndjson_file.write_bytes(
        json.dumps(item("KWD", "NGN", "7.125")).encode()
        + b"\n"
        + b'{"base_currency": "EUR", "target_currency": "JPY", "amount": "5"}\n'
        + b"not json\n"
        + b'["EUR", "USD", "1.00"]\n'
        + b'{"base_currency": "EUR", "target_currency": "USD", "amount": 1.5}\n'
    )
    return csv_file, ndjson_file, known


def convert(env: dict[str, str], source: Path, out: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`ces convert` as the outside producer (`ces-producer`'s credentials, nothing else of the admin's)."""
    import os

    producer = role_env("producer")
    done = subprocess.run(
        cli("convert", "--file", str(source), "--out", str(out), "--timeout", str(timeout)),
        env={**os.environ, **env, **producer},
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        check=False,
    )
    password = producer.get("CES_KAFKA_PASSWORD")
    assert not password or password not in done.stdout + done.stderr + (
        out.read_text(errors="replace") if out.exists() else ""
    )
    return done


def results_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ces_convert_answers_every_line_of_a_csv_and_an_ndjson_file_and_a_rerun_changes_nothing(
    running: RunningProcess, isolation: Isolation, worker_env: dict[str, str], tmp_path: Path
) -> None:
    csv_file, ndjson_file, known = write_inputs(tmp_path)
    first = convert(worker_env, csv_file, tmp_path / "csv-1.ndjson")
    assert first.returncode == 0, first.stderr
    csv_results = results_of(tmp_path / "csv-1.ndjson")
    assert [r["line"] for r in csv_results] == [2, 3, 5, 6, 7, 8]
    assert [r["outcome"] for r in csv_results] == ["audited", "audited", "refused", "refused", "refused", "rejected"]
    assert csv_results[0]["request_id"] == known
    assert Decimal(csv_results[0]["conversion"]["output_amount"]) == oracle("EUR", "USD", Decimal("100.00"))
    assert Decimal(csv_results[1]["conversion"]["output_amount"]) == oracle("GBP", "JPY", Decimal("12.00"))
    assert [r["problem"]["code"] for r in csv_results[2:]] == [
        "invalid_request",
        "unknown_currency",
        "malformed_json",
        "no_rate",
    ]
    assert "6 lines: 2 audited, 1 rejected, 3 refused, 0 undecided" in first.stderr

    ndjson = convert(worker_env, ndjson_file, tmp_path / "nd-1.ndjson")
    assert ndjson.returncode == 0, ndjson.stderr
    nd_results = results_of(tmp_path / "nd-1.ndjson")
    assert [r["line"] for r in nd_results] == [1, 2, 3, 4, 5]
    assert [r["outcome"] for r in nd_results] == ["audited", "audited", "refused", "refused", "refused"]
    assert [r["problem"]["code"] for r in nd_results[2:]] == ["malformed_json", "malformed_json", "invalid_amount"]

    # Reruns: the same ids (deterministic for lines without one), the same decisions, nothing recorded twice.
    again = convert(worker_env, csv_file, tmp_path / "csv-2.ndjson")
    nd_again = convert(worker_env, ndjson_file, tmp_path / "nd-2.ndjson")
    assert again.returncode == nd_again.returncode == 0
    for before, after in (
        (csv_results, results_of(tmp_path / "csv-2.ndjson")),
        (nd_results, results_of(tmp_path / "nd-2.ndjson")),
    ):
        assert [r.get("conversion") for r in after] == [r.get("conversion") for r in before]
        assert [r.get("request_id") for r in after] == [r.get("request_id") for r in before]
        assert all(r["replayed"] for r in after if r["outcome"] in ("audited", "rejected"))
    produced = [r["request_id"] for r in csv_results + nd_results if r["outcome"] in ("audited", "rejected")]
    rows = decision_rows(isolation, produced)
    assert sorted(rows) == sorted(produced) and {n for _, n in rows.values()} == {1}
    with isolation.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM conversion_request")).scalar_one() == len(produced)


def test_ces_convert_exits_non_zero_when_decisions_do_not_come_in_time(
    isolation: Isolation, settings: Settings, tmp_path: Path
) -> None:
    prefix = isolation.topic_prefix
    asyncio.run(ensure_topics(KafkaConnection.from_settings(settings), partitions=2, prefix=prefix))
    asyncio.run(grant_acls(settings, prefix=prefix, app_id=isolation.env["CES_APP_ID"]))
    source = tmp_path / "requests.csv"
    source.write_text("base_currency,target_currency,amount\nEUR,USD,1.00\nEUR,USD,x\n")
    done = convert(isolation.env, source, tmp_path / "out.ndjson", timeout=3)  # no worker is running
    assert done.returncode == 1, done.stderr
    results = results_of(tmp_path / "out.ndjson")
    assert [(r["outcome"], r["problem"]["code"]) for r in results] == [
        ("undecided", "result_timeout"),
        ("refused", "invalid_amount"),
    ]
