"""Benchmark: the replay's client-side CPU per audit from fetched records to COPY bytes, record by record
(`audit_rows.audited_rows`) against a batch at once (`audit_rows.audited_batch`).

Builds `--batch` audits like `benchmarks/replay.py`'s (half direct, half cross, varied ids and amounts) and
times, in thread CPU (`time.thread_time`, best of `--repeat`), per audit:

- `read`: what the replay's loop does with a fetched batch (`decoding.read`: the byte path, per record or
  per batch);
- `write`: `bulk_audit.copy_decisions` up to the bytes handed to the COPYs, against a cursor that only reads
  them (no database);
- and the byte path's own functions alone.

    python benchmarks/audit_batch.py [--batch 5000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from ces.adapters.postgres.audit_rows import audited_batch, audited_rows
from ces.adapters.postgres.bulk_audit import copy_decisions
from ces.events.conversions import ConversionAudited
from ces.projections.replay import PhaseReport, Record
from ces.projections.replay.decoding import read

TOPIC = "conversions-audited"
EXPECTED = {TOPIC: (ConversionAudited,)}


def audits(n: int) -> list[bytes]:
    rng = random.Random(11)
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    usd, jpy = uuid.uuid4(), uuid.uuid4()
    raws = []
    for i in range(n):
        cross = i % 2 == 1
        at = start + timedelta(microseconds=rng.randint(1, 10**9))
        raws.append(
            ConversionAudited(
                occurred_at=at,
                audit_id=uuid.uuid4(),
                request_id=uuid.uuid4(),
                rate_id=usd,
                rate_ids=[usd, jpy] if cross else [usd],
                rate_kind="cross" if cross else "direct",
                base_currency="USD" if cross else "EUR",
                target_currency="JPY" if cross else "USD",
                input_amount=Decimal(rng.randint(1, 10**8)).scaleb(-2),
                rate_value=Decimal(rng.randint(10**15, 10**16)).scaleb(-rng.randint(10, 15)),
                margin=Decimal("0.01"),
                output_amount=Decimal(rng.randint(1, 10**10)).scaleb(-2),
                converted_at=at,
            ).to_json()
        )
    return raws


class _Cursor:
    connection = SimpleNamespace(encoding="UTF8")
    rowcount = 0

    def execute(self, statement: str) -> None:
        pass

    def copy_expert(self, statement: str, data: Any, size: int) -> None:
        while data.read(size):
            pass

    def close(self) -> None:
        pass


class _Engine:
    """Just enough of an Engine for `copy_decisions`: its COPYs read their bytes and go nowhere."""

    @contextmanager
    def begin(self) -> Iterator[Any]:
        yield SimpleNamespace(connection=SimpleNamespace(dbapi_connection=SimpleNamespace(cursor=_Cursor)))


def per_audit(work: Callable[[], object], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.thread_time()
        work()
        best = min(best, time.thread_time() - began)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    raws = audits(args.batch)
    records: list[Record] = [(TOPIC, 0, offset, raw) for offset, raw in enumerate(raws)]
    engine: Any = _Engine()
    preparers = {TOPIC: audited_rows}
    batch = audited_batch(raws)
    assert batch is not None and all(audited_rows(raw) is not None for raw in raws)
    one = read(records, EXPECTED, preparers, {}, PhaseReport("audit"))
    many = read(records, EXPECTED, preparers, {TOPIC: audited_batch}, PhaseReport("audit"))
    n, r = args.batch, args.repeat
    print(f"{n:,} audits a batch, thread CPU per audit (best of {r}), {sum(map(len, raws)) / n:.0f} bytes each")
    print(f"{'':<28}{'record by record':>18}{'batch':>10}")
    rows = [
        (
            "byte path alone",
            per_audit(lambda: [audited_rows(raw) for raw in raws], n, r),
            per_audit(lambda: audited_batch(raws), n, r),
        ),
        (
            "read (decoding.read)",
            per_audit(lambda: read(records, EXPECTED, preparers, {}, PhaseReport("audit")), n, r),
            per_audit(lambda: read(records, EXPECTED, preparers, {TOPIC: audited_batch}, PhaseReport("audit")), n, r),
        ),
        (
            "write (copy_decisions, no db)",
            per_audit(lambda: copy_decisions(engine, one), n, r),  # type: ignore[arg-type]
            per_audit(lambda: copy_decisions(engine, many), n, r),  # type: ignore[arg-type]
        ),
    ]
    for name, before, after in rows:
        print(f"{name:<28}{before:>15.2f} us{after:>7.2f} us")
    before, after = rows[1][1] + rows[2][1], rows[1][2] + rows[2][2]
    print(f"{'read + write':<28}{before:>15.2f} us{after:>7.2f} us  ({after / before - 1:+.0%})")


if __name__ == "__main__":
    main()
