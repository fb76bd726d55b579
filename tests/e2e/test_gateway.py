"""The HTTP gateway over real HTTP, with a real worker, Kafka, PostgreSQL and Redis behind it."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.postgres.api_keys import PostgresApiKeyStore
from ces.events.signing import SIGNATURE_HEADER
from ces.services.api_keys import Scope, create_key, new_secret
from ces.settings import Settings
from tests.e2e.conftest import Isolation, RunningProcess, StartCes, free_port, poll
from tests.e2e.seeded import RATES, oracle
from tests.support import settings_as

# The API key each started gateway's callers send (created in the gateway's own schema).
AUTH: dict[str, dict[str, str]] = {}


def start_gateway(start_ces: StartCes, env: dict[str, str], **extra: str) -> str:
    port = free_port()
    gateway = start_ces("gateway", env={**env, "CES_GATEWAY_PORT": str(port), **extra})
    gateway.wait_for_output("Running on")
    url = f"http://127.0.0.1:{port}"
    AUTH[url] = {"Authorization": f"Bearer {api_key(env['CES_MIGRATION_DATABASE_URL'])}"}
    return url


def api_key(owner_url: str, scopes: frozenset[Scope] = frozenset(Scope)) -> str:
    """A new key, made as `ces keys create` makes it: by the owner role (the gateway's role only reads keys)."""
    engine = create_engine(Settings(migration_database_url=owner_url).migration_database_dsn)
    try:
        _, secret = create_key(PostgresApiKeyStore(engine), f"e2e-{uuid.uuid4().hex[:8]}", scopes)
    except OperationalError:
        secret = new_secret()  # the gateway's database is down: a well-formed key it cannot check
    finally:
        engine.dispose()
    return secret


def session_for(url: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers=AUTH[url])


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str) -> tuple[int, Any, Any]:
    async with session.post(f"{url}/v1/conversions", json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


def body(base: str, target: str, amount: str, request_id: str | None = None) -> dict[str, Any]:
    return {
        "base_currency": base,
        "target_currency": target,
        "amount": amount,
        "request_id": request_id or str(uuid.uuid4()),
    }


def test_conversions_match_the_audit_rows_and_500_concurrent_posts_all_answer(
    running: RunningProcess, start_ces: StartCes, isolation: Isolation, worker_env: dict[str, str]
) -> None:
    url = start_gateway(start_ces, worker_env)
    codes = ["EUR", *RATES]

    async def run() -> list[tuple[dict[str, Any], int, Any, Any]]:
        async with session_for(url) as session:
            # Whole amounts are valid in every currency (JPY has no minor units).
            requests = [body(codes[i % 6], codes[(i + 1 + i // 6) % 6], str(i + 1)) for i in range(500)]
            requests = [r for r in requests if r["base_currency"] != r["target_currency"]]
            answers = await asyncio.gather(*(post(session, url, r) for r in requests))
            return [(r, *a) for r, a in zip(requests, answers, strict=True)]

    results = asyncio.run(run())
    assert len(results) > 400
    for request, status, answer, headers in results:
        assert status == 201, answer
        assert answer["request_id"] == request["request_id"]
        expected = oracle(request["base_currency"], request["target_currency"], Decimal(request["amount"]))
        assert Decimal(answer["output_amount"]) == expected
        assert headers["Location"] == f"/v1/conversions/{answer['audit_id']}"
    with isolation.engine.connect() as conn:
        rows = {
            str(r.id): r.output_amount for r in conn.execute(text("SELECT id, output_amount FROM conversion_audit"))
        }
    assert {a["audit_id"]: Decimal(a["output_amount"]) for _, _, a, _ in results} == rows

    async def read_back(audit_id: str, request_id: str) -> tuple[Any, Any]:
        async with session_for(url) as session:
            async with session.get(f"{url}/v1/conversions/{audit_id}") as by_id:
                first = await by_id.json()
            async with session.get(f"{url}/v1/conversion-requests/{request_id}") as by_request:
                second = await by_request.json()
        return first, second

    _, _, answer, _ = results[0]
    assert asyncio.run(read_back(answer["audit_id"], answer["request_id"])) == (answer, answer)


def test_idempotent_retry_returns_the_same_audit_and_a_changed_body_conflicts(
    running: RunningProcess, start_ces: StartCes, worker_env: dict[str, str]
) -> None:
    url = start_gateway(start_ces, worker_env)
    request_id = str(uuid.uuid4())

    async def run() -> list[tuple[int, Any, Any]]:
        async with session_for(url) as session:
            first = await post(session, url, body("GBP", "KWD", "10.00", request_id))
            again = await post(session, url, body("GBP", "KWD", "10.00", request_id))
            header = await post(
                session,
                url,
                {k: v for k, v in body("GBP", "KWD", "10.00").items() if k != "request_id"},
                **{"Idempotency-Key": request_id},
            )
            changed = await post(session, url, body("GBP", "KWD", "99.00", request_id))
            return [first, again, header, changed]

    first, again, header, changed = asyncio.run(run())
    assert first[0] == again[0] == header[0] == 201
    assert first[1] == again[1] == header[1]
    assert again[2]["Idempotent-Replayed"] == "true"
    assert changed[0] == 409 and changed[1]["code"] == "idempotency_conflict"
    assert changed[2]["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (body("USD", "JPY", "-1.00"), 422, "invalid_amount"),
        (body("USD", "JPY", "1.001"), 422, "invalid_amount"),
        ({**body("USD", "JPY", "1.00"), "amount": 1.5}, 422, "invalid_amount"),
        (body("USD", "ZZZ", "1.00"), 422, "unknown_currency"),
        (body("USD", "USD", "1.00"), 422, "unsupported_pair"),
        ({**body("USD", "JPY", "1.00"), "surprise": True}, 422, "invalid_request"),
        ({"base_currency": "USD", "target_currency": "JPY", "amount": "1.00"}, 422, "invalid_request"),
        (body("USD", "CHF", "1.00"), 404, "no_rate"),
    ],
)
def test_bad_requests_get_problem_details(
    running: RunningProcess,
    start_ces: StartCes,
    worker_env: dict[str, str],
    payload: dict[str, Any],
    status: int,
    code: str,
) -> None:
    url = start_gateway(start_ces, worker_env)

    async def run() -> tuple[int, Any, Any]:
        async with session_for(url) as session:
            return await post(session, url, payload)

    got_status, problem, headers = asyncio.run(run())
    assert (got_status, problem["code"]) == (status, code), problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem["type"] == f"/problems/{code}" and problem["status"] == status and problem["detail"]


def test_oversized_and_non_json_bodies_are_refused(
    running: RunningProcess, start_ces: StartCes, worker_env: dict[str, str]
) -> None:
    url = start_gateway(start_ces, worker_env)

    async def run() -> list[tuple[int, str]]:
        async with session_for(url) as session:
            out = []
            for data in (b"x" * 100_000, b"{not json"):
                async with session.post(
                    f"{url}/v1/conversions", data=data, headers={"Content-Type": "application/json"}
                ) as response:
                    out.append((response.status, response.headers["Content-Type"]))
            return out

    (big, big_type), (bad, bad_type) = asyncio.run(run())
    assert big == 413 and bad == 400
    assert big_type.startswith("application/problem+json") and bad_type.startswith("application/problem+json")


def test_no_worker_means_504_and_the_gateway_stays_healthy(
    start_ces: StartCes, running: RunningProcess, worker_env: dict[str, str]
) -> None:
    assert running.terminate() == 0  # the worker is gone: nobody answers requests
    url = start_gateway(start_ces, worker_env, CES_GATEWAY_TIMEOUT_SECONDS="1.5")

    async def run() -> tuple[list[int], int, str]:
        async with session_for(url) as session:
            answers = await asyncio.gather(*(post(session, url, body("USD", "JPY", "1.00")) for _ in range(20)))
            async with session.get(f"{url}/healthz") as health:
                healthy = health.status
            async with session.get(f"{url}/metrics") as metrics:
                text_metrics = await metrics.text()
            return [a[0] for a in answers], healthy, text_metrics

    statuses, healthy, metrics_text = asyncio.run(run())
    assert statuses == [504] * 20
    assert healthy == 200
    assert "ces_gateway_pending_conversions" in metrics_text
    assert "ces_rate_tracking_up" not in metrics_text  # the worker's gauge: here it would read 0, "down"


def test_postgres_down_means_503_with_retry_after_and_readyz_says_which(
    start_ces: StartCes, isolation: Isolation, worker_env: dict[str, str]
) -> None:
    """The gateway's database does not answer (a closed port): conversions and reads that need it are
    503 problems with Retry-After, within the deadline, and /readyz names postgres."""
    url = start_gateway(start_ces, {**worker_env, "CES_DATABASE_URL": "postgresql+psycopg2://ces:ces@127.0.0.1:9/ces"})

    async def run() -> list[tuple[int, Any, Any]]:
        async with session_for(url) as session:
            answers = [await post(session, url, body("USD", "JPY", "1.00")) for _ in range(3)]
            for path in (f"/v1/conversion-requests/{uuid.uuid4()}", "/readyz"):
                async with session.get(url + path) as response:
                    answers.append((response.status, await response.json(content_type=None), response.headers))
            return answers

    answers = asyncio.run(run())
    for status, payload, headers in answers[:-1]:
        assert (status, payload["code"]) == (503, "unavailable")
        assert headers["Retry-After"] == "1" and headers["Content-Type"].startswith("application/problem+json")
    ready_status, ready, _ = answers[-1]
    assert ready_status == 503 and "postgres" in ready["checks"]


def test_two_gateway_instances_each_get_their_own_replies(
    running: RunningProcess, start_ces: StartCes, worker_env: dict[str, str]
) -> None:
    urls = [start_gateway(start_ces, worker_env), start_gateway(start_ces, worker_env)]

    async def run() -> list[tuple[dict[str, Any], int, Any, Any]]:
        async with session_for(urls[0]) as session:
            requests = [(urls[i % 2], body("EUR", "USD", f"{i + 1}.00")) for i in range(100)]
            answers = await asyncio.gather(*(post(session, url, b) for url, b in requests))
            return [(b, *a) for (_, b), a in zip(requests, answers, strict=True)]

    for request, status, answer, _ in asyncio.run(run()):
        assert status == 201, answer
        assert answer["request_id"] == request["request_id"]
        assert Decimal(answer["output_amount"]) == oracle("EUR", "USD", Decimal(request["amount"]))


def test_a_repeated_request_id_gets_the_first_rejection_answered_by_the_worker(
    running: RunningProcess, start_ces: StartCes, worker_env: dict[str, str]
) -> None:
    """The gateway publishes every request; the worker answers a repeat with the stored decision, marked
    as re-published: a rejection stays the first rejection (same body, same rejected_at)."""
    url = start_gateway(start_ces, worker_env)
    request_id = str(uuid.uuid4())

    async def run() -> list[tuple[int, Any, Any]]:
        async with session_for(url) as session:
            return [await post(session, url, body("USD", "CHF", "1.00", request_id)) for _ in range(3)]

    first, *again = asyncio.run(run())
    assert first[0] == 404 and first[1]["code"] == "no_rate" and first[1]["request_id"] == request_id
    for status, answer, _ in again:
        assert (status, answer) == (first[0], first[1])


def test_gateway_processes_share_the_port_and_each_gets_its_own_replies(
    running: RunningProcess, start_ces: StartCes, worker_env: dict[str, str]
) -> None:
    port = free_port()
    gateway = start_ces("gateway", "--processes", "2", env={**worker_env, "CES_GATEWAY_PORT": str(port)})
    deadline = time.monotonic() + 120
    while len(pids := set(re.findall(r"Running on \S+ =+\n.*\(pid (\d+)\)", gateway.output()))) < 2:
        assert time.monotonic() < deadline, gateway.output()[-3000:]
        assert gateway.proc.poll() is None, gateway.output()[-3000:]
        time.sleep(0.2)
    url = f"http://127.0.0.1:{port}"

    async def run() -> list[tuple[dict[str, Any], int, Any, Any]]:
        # A new connection per request, so the kernel spreads them over both processes: a reply read by
        # the wrong instance would leave its request waiting until the deadline (504).
        headers = {"Authorization": f"Bearer {api_key(worker_env['CES_MIGRATION_DATABASE_URL'])}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True), headers=headers) as session:
            requests = [body("EUR", "USD", f"{i + 1}.00") for i in range(60)]
            answers = await asyncio.gather(*(post(session, url, b) for b in requests))
            return [(b, *a) for b, a in zip(requests, answers, strict=True)]

    for request, status, answer, _ in asyncio.run(run()):
        assert status == 201, answer
        assert answer["request_id"] == request["request_id"]
        assert Decimal(answer["output_amount"]) == oracle("EUR", "USD", Decimal(request["amount"]))
    assert len(pids) == 2
    assert gateway.terminate() == 0  # SIGTERM stops both processes and the supervisor cleanly


def test_rates_endpoints_serve_any_pair_with_provenance(
    running: RunningProcess, start_ces: StartCes, worker_env: dict[str, str]
) -> None:
    url = start_gateway(start_ces, worker_env)

    async def run() -> dict[str, Any]:
        async with session_for(url) as session:
            out = {}
            for name, path in {
                "cross": "/v1/rates/usd/ngn",
                "table": "/v1/rates?base=EUR&symbols=USD,GBP",
                "currencies": "/v1/currencies",
                "ready": "/readyz",
                "openapi": "/openapi.json",
            }.items():
                async with session.get(url + path) as response:
                    out[name] = (response.status, await response.json(content_type=None))
            return out

    answers = asyncio.run(run())
    status, cross = answers["cross"]
    assert status == 200 and cross["kind"] == "cross" and len(cross["legs"]) == 2
    with localcontext() as ctx:
        ctx.prec = 60
        expected_cross = Decimal(f"{Decimal(RATES['NGN']) / Decimal(RATES['USD']):.15e}")
    assert Decimal(cross["rate_value"]) == expected_cross
    assert [leg["target_currency"] for leg in cross["legs"]] == ["USD", "NGN"]
    status, table = answers["table"]
    assert status == 200 and sorted(table["rates"]) == ["GBP", "USD"]
    assert table["rates"]["USD"]["rate_value"] == RATES["USD"]
    assert {c["code"] for c in answers["currencies"][1]["currencies"]} == {"EUR", *RATES}
    assert answers["ready"][0] == 200
    assert answers["openapi"][1]["openapi"].startswith("3.1")


def test_schemathesis_finds_no_failure_with_every_check(
    running: RunningProcess, start_ces: StartCes, worker_env: dict[str, str], tmp_path: Path
) -> None:
    url = start_gateway(start_ces, worker_env)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    config = Path(__file__).with_name("schemathesis.toml")  # where valid data may be answered 422, and why
    result = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: {AUTH[url]['Authorization']}",
            "-n",
            "25",
            "--request-timeout",
            "15",
            "--generation-deterministic",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # schemathesis keeps its example database in the working directory
    )
    assert result.returncode == 0, result.stdout[-5000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert summary is not None and summary.group(1) == summary.group(2) and int(summary.group(1)) > 100


def test_every_conversion_records_the_key_that_asked_and_no_key_is_logged(
    running: RunningProcess, start_ces: StartCes, isolation: Isolation, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """Who asked is on the audit row and on the event; a call without a key, or with a key lacking the
    scope, is refused before it reaches Kafka; the secret never appears in the gateway's or worker's log."""
    url = start_gateway(start_ces, worker_env)
    reader = api_key(worker_env["CES_MIGRATION_DATABASE_URL"], frozenset({Scope.READ}))
    converter = AUTH[url]["Authorization"].removeprefix("Bearer ")
    request = body("EUR", "USD", "12.34")

    async def run() -> list[tuple[int, Any]]:
        out = []
        async with aiohttp.ClientSession() as anonymous:
            out.append(await post(anonymous, url, body("EUR", "USD", "1.00")))
            out.append(await post(anonymous, url, body("EUR", "USD", "1.00"), Authorization=f"Bearer {reader}"))
        async with session_for(url) as session:
            out.append(await post(session, url, request))
        return [(status, answer) for status, answer, _ in out]

    (no_key, _), (wrong_scope, _), (ok, audit) = asyncio.run(run())
    assert (no_key, wrong_scope, ok) == (401, 403, 201)
    assert audit["request_id"] == request["request_id"]
    with isolation.engine.connect() as conn:
        by_hash = text("SELECT id FROM api_key WHERE key_hash = sha256(convert_to(:s, 'UTF8'))")
        key_id = conn.execute(by_hash, {"s": converter}).scalar_one()
        rows = conn.execute(text("SELECT request_id, requested_by FROM conversion_audit")).all()
    assert [(str(r.request_id), r.requested_by) for r in rows] == [(request["request_id"], key_id)]
    logs = [log.read_text(errors="replace") for log in tmp_path.glob("ces-*.log")]
    assert len(logs) >= 2  # the worker's and the gateway's
    assert not [log for log in logs if converter in log or reader in log]


def test_an_outside_producer_cannot_say_who_asked_but_the_gateway_can(
    running: RunningProcess, start_ces: StartCes, isolation: Isolation, worker_env: dict[str, str], settings: Settings
) -> None:
    """The gateway signs its requests, so its key id lands on the audit; `ces-producer` (allowed to write
    requests) naming that key id in `requested_by`, unsigned or with a made-up signature, is rejected as
    `unauthenticated_requester` and recorded with nobody as the requester; its request naming nobody converts."""
    url = start_gateway(start_ces, worker_env)
    converter = AUTH[url]["Authorization"].removeprefix("Bearer ")
    via_gateway = body("EUR", "USD", "5.00")

    async def convert() -> int:
        async with session_for(url) as session:
            status, _, _ = await post(session, url, via_gateway)
            return status

    assert asyncio.run(convert()) == 201
    with isolation.engine.connect() as conn:
        by_hash = text("SELECT id FROM api_key WHERE key_hash = sha256(convert_to(:s, 'UTF8'))")
        key_id = conn.execute(by_hash, {"s": converter}).scalar_one()

    forged_unsigned, forged_signed, honest = (str(uuid.uuid4()) for _ in range(3))

    def outside(request_id: str, requested_by: uuid.UUID | None) -> bytes:
        payload = {**body("EUR", "USD", "7.00", request_id), "schema_version": 2}
        if requested_by is not None:
            payload["requested_by"] = str(requested_by)
        return json.dumps(payload).encode()

    async def produce_as_outside_service() -> None:
        producer = AIOKafkaProducer(**KafkaConnection.from_settings(settings_as("producer", settings)).kwargs())
        await producer.start()
        try:
            topic = isolation.topic_prefix + "conversion-requests"
            await producer.send_and_wait(topic, outside(forged_unsigned, key_id), key=forged_unsigned.encode())
            made_up = [(SIGNATURE_HEADER, b"v1:" + b"0" * 8 + b":" + b"f" * 64)]
            await producer.send_and_wait(
                topic, outside(forged_signed, key_id), key=forged_signed.encode(), headers=made_up
            )
            await producer.send_and_wait(topic, outside(honest, None), key=honest.encode())
        finally:
            await producer.stop()

    asyncio.run(produce_as_outside_service())

    def decided() -> tuple[list[Any], list[Any]] | None:
        with isolation.engine.connect() as conn:
            audits = conn.execute(text("SELECT request_id::text, requested_by FROM conversion_audit")).all()
            rejections = conn.execute(
                text("SELECT request_id::text, reason, requested_by, message FROM conversion_rejection")
            ).all()
        return (audits, rejections) if len(audits) + len(rejections) == 4 else None

    found = poll(decided, timeout=90, what="four decisions")
    assert isinstance(found, tuple)
    audits, rejections = found
    assert sorted((r.request_id, r.requested_by) for r in audits) == sorted(
        [(via_gateway["request_id"], key_id), (honest, None)]
    )
    assert sorted((r.request_id, r.reason, r.requested_by) for r in rejections) == sorted(
        [(forged_unsigned, "unauthenticated_requester", None), (forged_signed, "unauthenticated_requester", None)]
    )
    assert all(str(key_id) in r.message for r in rejections)
