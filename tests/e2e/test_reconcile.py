"""`ces reconcile` over a real worker's topics: no gap once the worker is done, a gap while it is stopped,
none again after it restarts (what fault tests rely on)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from ces.settings import Settings
from tests.e2e.conftest import Isolation, StartCes
from tests.e2e.seeded import produce, request, seed_rates


def reconcile(isolation: Isolation, *args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "ces", "reconcile", "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **isolation.env},
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_no_gap_after_the_worker_a_gap_while_it_is_down(
    start_ces: StartCes, isolation: Isolation, settings: Settings, worker_env: dict[str, str]
) -> None:
    worker = start_ces("worker", env=worker_env)
    seed_rates(settings, isolation)
    topic = f"{isolation.topic_prefix}conversion-requests"
    good = [request("USD", "EUR", f"{i}.00") for i in range(1, 41)]
    rejected = [request("USD", "ZZZ", "1.00"), request("USD", "USD", "1.00")]
    poison: list[tuple[bytes | None, bytes]] = [(None, b"{not json"), (None, b"\xff\xfe")]
    retry = good[0]  # a producer retry of the first request: answered by the same decision
    asyncio.run(produce(settings, topic, [*good, *rejected, *poison, retry]))

    code, report = reconcile(isolation, "--wait", "120")
    assert code == 0, report
    totals = report["totals"]
    assert (totals["produced"], totals["request_ids"]) == (45, 42)
    assert (totals["audited"], totals["rejected"], totals["dead_lettered"], totals["missing"]) == (41, 2, 2, 0)
    assert report["double_decisions"] == []

    assert worker.terminate() == 0
    late = request("USD", "EUR", "7.00")
    asyncio.run(produce(settings, topic, [late]))
    code, report = reconcile(isolation)
    assert code == 1
    assert [m["request_id"] for m in report["missing"]] == [late[0].decode()]

    start_ces("worker", env=worker_env)
    code, report = reconcile(isolation, "--wait", "120")
    assert code == 0, report
    assert report["totals"]["produced"] == 46
    assert report["totals"]["missing"] == 0
