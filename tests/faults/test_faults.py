"""Fault scenarios (issue 9): each runs under >= 20,000 outside requests, breaks something, then accounts
for every message with the test's own oracle, compares PostgreSQL with the decision events and replays."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaProducer

from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote
from tests.e2e.conftest import RunningProcess
from tests.faults import harness
from tests.faults.harness import (
    PARTITIONS,
    RATES,
    REQUESTS,
    Deployment,
    Load,
    Observer,
    Poison,
    Result,
    kill9,
    poll_until,
    request_bytes,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(420)]

LOAD_RATE = 500.0  # requests/s: 20,000 take 40 s, so the load spans every fault window below
LOAD_MINIMUM = 20_000
OUTAGE_SECONDS = 30.0
DRAIN_SECONDS = 90.0  # after the load ends, how long every message has to be accounted for
RECOVERY_TARGET = 15.0  # the goal, printed next to what was measured
RECOVERY_BOUND = 150.0  # waited for: decisions resume at all
# Asserted after kill -9: twice the goal. Measured 10.1-11.3 s under this load once the group sessions were
# shortened (58-60 s before); a loaded 2-core machine needs the margin.
KILL_RECOVERY_BOUND = 30.0


@dataclass
class Run:
    """One scenario in progress: its deployment, the worker, the load and what was measured."""

    d: Deployment
    observer: Observer
    result: Result
    worker: RunningProcess | None = None
    sim: RunningProcess | None = None
    load: Load | None = None
    poisons: list[Poison] = field(default_factory=list)

    def recovery_after(self, epoch_s: float, what: str) -> float | None:
        """Seconds from `epoch_s` to the first decision event created after it (None: not within the bound)."""
        since_ms = int(epoch_s * 1000)
        try:
            poll_until(lambda: self.observer.decisions_since(since_ms) > 0, timeout=RECOVERY_BOUND, what=what)
        except AssertionError:
            self.result.notes.append(f"{what}: no decision within {RECOVERY_BOUND:.0f}s")
            return None
        seconds = time.time() - epoch_s
        self.result.recovery_s.append(seconds)
        print(f"[{self.result.scenario}] {what}: first new decision after {seconds:.1f}s (target {RECOVERY_TARGET}s)")
        return seconds

    def wait_flowing(self, count: int = 500) -> None:
        since_ms = int(time.time() * 1000)
        poll_until(
            lambda: self.observer.decisions_since(since_ms) >= count, timeout=120, what=f"{count} fresh decisions"
        )


def start(d: Deployment, observer: Observer, name: str) -> Run:
    run = Run(d, observer, Result(name))
    run.sim = d.start_provider()
    run.worker = d.start_worker()
    poll_until(lambda: d.rate_rows() > 0, timeout=60, what="first rates projected")
    observer.start()
    return run


def finish(run: Run) -> None:
    """Account for everything, compare the database with the events, replay and verify; then assert."""
    assert run.load is not None
    run.load.finish()
    d, observer = run.d, run.observer
    deadline = time.monotonic() + DRAIN_SECONDS
    acc = harness.account(observer, run.load, run.poisons)
    while not acc.complete and time.monotonic() < deadline:
        time.sleep(1.0)
        acc = harness.account(observer, run.load, run.poisons)
    run.result.account = acc
    if run.load.failed:
        run.result.notes.append(f"{len(run.load.failed)} load sends never acknowledged")
    run.result.notes.append(
        f"sent {run.load.sent} messages ({run.load.send_retries} send retries), {len(run.load.expected)} request ids"
    )
    if acc.lost_examples:
        run.result.notes.append(f"lost e.g. {acc.lost_examples[:3]}")
    if acc.wrong_examples:
        run.result.notes.append(f"wrong e.g. {acc.wrong_examples[:3]}")

    db_audited, db_rejected = d.db_decisions()
    with observer.lock:
        ev_audited = {rid for rid, ds in observer.seen.decisions.items() if any(k == "audited" for k, _ in ds)}
        ev_rejected = {rid for rid, ds in observer.seen.decisions.items() if any(k == "rejected" for k, _ in ds)}
    run.result.db_match = (
        set(db_audited) == ev_audited
        and set(db_rejected) == ev_rejected
        and len(db_audited) == len(ev_audited)
        and len(db_rejected) == len(ev_rejected)
    )
    if not run.result.db_match:
        run.result.notes.append(
            f"db audits {len(db_audited)} vs events {len(ev_audited)}; "
            f"db rejections {len(db_rejected)} vs events {len(ev_rejected)}"
        )
    recon = d.reconcile(wait=10)
    run.result.reconcile_exit = recon.returncode
    try:
        totals = json.loads(recon.stdout)["totals"]
        run.result.notes.append(f"ces reconcile totals: {totals}")
    except (ValueError, KeyError):
        run.result.notes.append("ces reconcile: " + (recon.stdout + recon.stderr)[-400:].replace("\n", " | "))
    replay = d.replay_verify()
    run.result.replay_exit = replay.returncode
    if replay.returncode != 0:
        run.result.notes.append("replay: " + (replay.stdout + replay.stderr)[-600:].replace("\n", " | "))
    alive = run.worker is not None and run.worker.proc.poll() is None
    if not alive:
        run.result.notes.append("the worker died")
    harness.RESULTS.append(run.result)
    print("\n" + harness.HEADER + "\n" + run.result.row())
    for note in run.result.notes:
        print(f"  {note}")

    logs = d.log_excerpt()
    assert alive, f"the worker died\n{logs}"
    assert run.load.sent >= LOAD_MINIMUM
    assert acc.lost == 0, f"{acc.lost} messages never accounted for, e.g. {acc.lost_examples}\n{logs}"
    assert acc.twice == 0, f"{acc.twice} request ids decided two different ways\n{logs}"
    assert acc.wrong == 0, f"{acc.wrong} decisions not as expected, e.g. {acc.wrong_examples}\n{logs}"
    assert acc.produced == acc.audited + acc.rejected + acc.dead
    assert acc.rates_dead == 0, f"{acc.rates_dead} fetched rates dead-lettered\n{logs}"
    assert run.result.db_match, f"PostgreSQL differs from the decision events: {run.result.notes}\n{logs}"
    # CES's own accounting must agree with the oracle (clean here, so exit 0).
    assert recon.returncode == 0, f"ces reconcile exited {recon.returncode}:\n{recon.stdout[-3000:]}{recon.stderr}"
    assert replay.returncode == 0, f"replay --verify exited {replay.returncode}:\n{replay.stdout[-3000:]}"


def begin_load(run: Run, seed: int) -> Load:
    run.load = Load(
        run.d.stack.kafka_kwargs, run.d.topic(REQUESTS), rate=LOAD_RATE, minimum=LOAD_MINIMUM, seed=seed
    ).start()
    run.wait_flowing()
    return run.load


def test_worker_killed_nine_three_times(deployment: Deployment, observer: Observer) -> None:
    run = start(deployment, observer, "kill -9 worker x3")
    begin_load(run, seed=1)
    for i in range(3):
        assert run.worker is not None
        kill9(run.worker)
        # Restarted at once, as a supervisor would.
        restarted = time.time()
        run.worker = deployment.start("worker", name="worker")
        run.recovery_after(restarted, f"kill {i + 1}")
        run.wait_flowing(200)
    finish(run)
    assert len(run.result.recovery_s) == 3, run.result.notes
    assert max(run.result.recovery_s) <= KILL_RECOVERY_BOUND, (
        f"recovery after kill -9 took {run.result.recovery_s} s\n{deployment.log_excerpt()}"
    )


def test_kafka_broker_sigterm_and_restart(deployment: Deployment, observer: Observer) -> None:
    run = start(deployment, observer, "kafka SIGTERM+restart")
    begin_load(run, seed=2)
    stopped = deployment.stack.kafka().stop()  # SIGTERM to the broker's process group, waits for exit
    assert stopped
    assert not deployment.stack.kafka().answers()
    up_seconds = deployment.stack.up()
    back = time.time()
    run.result.notes.append(f"broker restarted by `cesdev stack up` in {up_seconds:.1f}s")
    run.recovery_after(back, "broker back")
    finish(run)


@pytest.mark.parametrize("service", ["postgres", "redis"])
def test_store_stopped_for_thirty_seconds(deployment: Deployment, observer: Observer, service: str) -> None:
    run = start(deployment, observer, f"{service} down {OUTAGE_SECONDS:.0f}s")
    begin_load(run, seed=3 if service == "postgres" else 4)
    target = deployment.stack.postgres() if service == "postgres" else deployment.stack.redis()
    assert target.stop()
    assert not target.answers()
    time.sleep(OUTAGE_SECONDS)  # holding the outage, not synchronising
    deployment.stack.up()
    back = time.time()
    run.recovery_after(back, f"{service} back")
    finish(run)


def _sim(port: int, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=10) as response:
        result: dict[str, object] = json.loads(response.read())
    return result


def test_provider_fails_for_three_fetch_intervals(deployment: Deployment, observer: Observer) -> None:
    run = start(deployment, observer, "provider fails 3 fetches")
    begin_load(run, seed=5)
    armed = time.time()
    _sim(deployment.sim_port, "/_sim/fail", {"mode": "http500", "count": 1_000_000})

    def failures_since(epoch_s: float) -> int:
        with observer.lock:
            return sum(1 for t in observer.seen.fetch_failures_at_ms if t >= epoch_s * 1000)

    def rates_since(epoch_s: float) -> int:
        with observer.lock:
            return sum(1 for t in observer.seen.rates_at_ms if t >= epoch_s * 1000)

    poll_until(lambda: failures_since(armed) >= 3, timeout=90, what="three RateFetchFailed events")
    _sim(deployment.sim_port, "/_sim/fail", {"mode": "none"})
    healed = time.time()
    run.result.notes.append(f"{failures_since(armed)} RateFetchFailed published during the provider outage")
    poll_until(lambda: rates_since(healed) > 0, timeout=60, what="RateFetched after the provider healed")
    run.result.recovery_s.append(time.time() - healed)
    assert run.worker is not None and run.worker.proc.poll() is None, deployment.log_excerpt()
    finish(run)


# Poison inputs. Each is followed by a valid request on the same partition, which must be decided in 10 s.

POISON_DEADLINE = 10.0


def _rid() -> str:
    return str(uuid.uuid4())


def _valid_body(rid: str, **override: object) -> dict[str, object]:
    return {"request_id": rid, "base_currency": "USD", "target_currency": "JPY", "amount": "100.00", **override}


def _rate_fetched_far_future() -> bytes:
    published = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
    quote = ProviderQuote("ecb", "EUR", published, {"USD": Decimal("1.1")})
    event = json.loads(quote_events(quote, uuid.uuid4(), published)[0].to_json())
    event["published_at"] = "9999-12-31T23:59:59-01:00"
    return json.dumps(event).encode()


def poison_cases() -> list[tuple[str, str, bytes | None, bytes | None, str | None, str]]:
    """(name, topic, key, value, request id if any, what must happen)."""
    deep_rid = _rid()
    nul_key_rid, nul_val_rid, surrogate_rid, fullwidth_rid = _rid(), _rid(), _rid(), _rid()
    big_rid, nan_rid, inf_rid, exp_rid, dup_rid = _rid(), _rid(), _rid(), _rid(), _rid()
    mib = b'{"request_id": "' + big_rid.encode() + b'", "pad": "' + b"x" * 1_000_000 + b'"}'
    cases: list[tuple[str, str, bytes | None, bytes | None, str | None, str]] = [
        ("5000-digit request_id", REQUESTS, b"big-int", b'{"request_id": ' + b"9" * 5000 + b"}", None, "dead"),
        ("nested 10,000 deep", REQUESTS, b"deep", b"[" * 10_000 + b"]" * 10_000, None, "dead"),
        (
            "nested 8,000 deep (fits 16 KiB)",
            REQUESTS,
            deep_rid.encode(),
            b'{"request_id": "' + deep_rid.encode() + b'", "x": ' + b"[" * 8000 + b"]" * 8000 + b"}",
            deep_rid,
            "accounted",
        ),
        (
            "NUL in a field name",
            REQUESTS,
            nul_key_rid.encode(),
            json.dumps({**_valid_body(nul_key_rid), "a\u0000b": 1}).encode(),
            nul_key_rid,
            "accounted",
        ),
        (
            "NUL in a field value",
            REQUESTS,
            nul_val_rid.encode(),
            json.dumps(_valid_body(nul_val_rid, base_currency="US\u0000D")).encode(),
            nul_val_rid,
            "accounted",
        ),
        (
            "lone surrogate",
            REQUESTS,
            surrogate_rid.encode(),
            b'{"request_id": "'
            + surrogate_rid.encode()
            + b'", "base_currency": "\\ud800", "target_currency": "JPY", "amount": "1.00"}',
            surrogate_rid,
            "accounted",
        ),
        (
            "fullwidth digits amount",
            REQUESTS,
            fullwidth_rid.encode(),
            json.dumps(_valid_body(fullwidth_rid, amount="１２"), ensure_ascii=False).encode(),
            fullwidth_rid,
            "rejected:invalid_amount",
        ),
        (
            "RateFetched published 9999-12-31T23:59:59-01:00",
            RATES,
            b"EUR:USD",
            _rate_fetched_far_future(),
            None,
            "dead",
        ),
        ("invalid UTF-8", REQUESTS, b"utf8", b'{"request_id": "\xff\xfe\xfd"}', None, "dead"),
        ("empty value", REQUESTS, b"empty", b"", None, "dead"),
        ("null value (tombstone)", REQUESTS, b"tombstone", None, None, "dead"),
        ("1,000,000-byte value", REQUESTS, big_rid.encode(), mib, big_rid, "accounted"),
        (
            "JSON NaN amount",
            REQUESTS,
            nan_rid.encode(),
            b'{"request_id": "' + nan_rid.encode() + b'", "base_currency": "USD", "target_currency": "JPY", '
            b'"amount": NaN}',
            nan_rid,
            "rejected:invalid_amount",
        ),
        (
            "JSON 1e400 amount",
            REQUESTS,
            inf_rid.encode(),
            b'{"request_id": "' + inf_rid.encode() + b'", "base_currency": "USD", "target_currency": "JPY", '
            b'"amount": 1e400}',
            inf_rid,
            "rejected:invalid_amount",
        ),
        (
            "amount 1E-999999999",
            REQUESTS,
            exp_rid.encode(),
            json.dumps(_valid_body(exp_rid, amount="1E-999999999")).encode(),
            exp_rid,
            "rejected:invalid_amount",
        ),
        (
            "duplicate request_id keys",
            REQUESTS,
            dup_rid.encode(),
            b'{"request_id": "not-a-uuid", "request_id": "' + dup_rid.encode() + b'", "base_currency": "USD", '
            b'"target_currency": "JPY", "amount": "1.00"}',
            None,  # a repeated key is refused: JSON parsers disagree on which value wins
            "dead",
        ),
    ]
    return cases


def _wait_accounted(observer: Observer, poison: Poison, probe: str, deadline: float) -> None:
    """Until the valid request after the poison is decided and the poison itself decided or dead-lettered.

    Both, because the worker pipelines batches: a later batch can be decided while the poison's batch is
    stuck (seen before the failure policy: the probe was decided in 0.1 s, the partition stalled for good)."""

    def done() -> bool:
        dead = observer.dead_lettered(poison.topic, poison.partition, poison.offset)
        return bool(observer.decided(probe)) and (
            dead is not None or bool(poison.request_id and observer.decided(poison.request_id))
        )

    while time.monotonic() < deadline and not done():
        time.sleep(0.05)


def test_poison_inputs_do_not_stall_their_partition(deployment: Deployment, observer: Observer) -> None:
    run = start(deployment, observer, "poison inputs")
    load = begin_load(run, seed=6)
    outcomes: list[str] = []
    stalled: set[int] = set()

    async def inject() -> None:
        producer = AIOKafkaProducer(**deployment.stack.kafka_kwargs, max_request_size=2 * 1024 * 1024)
        await producer.start()
        try:
            for i, (name, topic, key, value, rid, must) in enumerate(poison_cases()):
                free = [p for p in range(PARTITIONS) if p not in stalled]
                if not free:
                    outcomes.append(f"{name}: not run, every partition already stalled")
                    continue
                partition = free[i % len(free)]
                md = await producer.send_and_wait(deployment.topic(topic), value, key=key, partition=partition)
                run.poisons.append(Poison(name, deployment.topic(topic), md.partition, md.offset, rid, must))
                probe = _rid()
                load.expected[probe] = harness.EXPECT_AUDITED
                sent = time.monotonic()
                await producer.send_and_wait(
                    deployment.topic(REQUESTS),
                    request_bytes(probe, "USD", "JPY", "100.00"),
                    key=probe.encode(),
                    partition=partition,
                )
                poisoned = run.poisons[-1]
                await asyncio.to_thread(_wait_accounted, observer, poisoned, probe, sent + POISON_DEADLINE)
                took = time.monotonic() - sent
                fate = observer.dead_lettered(poisoned.topic, poisoned.partition, poisoned.offset) or (
                    "decided" if rid and observer.decided(rid) else None
                )
                if observer.decided(probe) and fate:
                    outcomes.append(f"{name}: it ({fate}) and the next request on p{partition} done in {took:.1f}s")
                else:
                    stalled.add(partition)
                    outcomes.append(
                        f"{name}: NOT done in {POISON_DEADLINE:.0f}s on p{partition} "
                        f"(next request decided: {bool(observer.decided(probe))}, poison: {fate or 'unaccounted'})"
                    )
        finally:
            await producer.stop()

    asyncio.run(inject())
    for line in outcomes:
        print(f"[poison] {line}")
    run.result.notes.extend(outcomes)
    misses = [line for line in outcomes if "NOT done" in line or "not run" in line]
    try:
        finish(run)
    finally:
        # What became of each poison, for the report (after the drain, so slow outcomes count).
        for p in run.poisons:
            dead = observer.dead_lettered(p.topic, p.partition, p.offset)
            got = observer.decided(p.request_id) if p.request_id else []
            line = f"{p.name}: dlq={dead} decisions={got} (must {p.must})"
            print(f"[poison] {line}")
            run.result.notes.append(line)
    assert not misses, f"poison stalled its partition: {misses}\n{deployment.log_excerpt()}"
