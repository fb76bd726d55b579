"""Benchmark probe: counts the Kafka requests a process sends, by type (docs/http.md, "The broker's and
PostgreSQL's CPU per conversion, counted").

With this folder on a process's `PYTHONPATH` (e.g. `benchmarks/serve_isolated.py`'s or `benchmarks/floor.py`'s:
their children inherit it) and `CES_BENCH_KAFKA_COUNTS` naming a folder, every process that uses aiokafka
writes `<pid>.json` there each second: its requests by type and, for produce requests, the record batches,
records, bytes and compressed batches, by topic too. Without the variable it does nothing. The wrapper costs
the process a little CPU: counts from a probed run, CPU figures from an unprobed one.
`benchmarks/request_counts.py` reads the files.
"""

from __future__ import annotations

import collections
import json
import os
import struct
import sys
import threading
import time
from typing import Any

_OUT = os.environ.get("CES_BENCH_KAFKA_COUNTS")


def _install(out: str) -> None:
    try:
        import aiokafka.conn as conn
    except ImportError:
        return
    counts: collections.Counter[str] = collections.Counter()
    original = conn.AIOKafkaConnection.send

    def send(self: Any, request: Any, expect_response: bool = True) -> Any:
        name = type(request).__name__
        counts[name] += 1
        if name == "ProduceRequest":
            for topic, partitions in getattr(request, "_topics", ()):
                for _, data in partitions:
                    batch = bytes(data)
                    # Record batch v2: attributes (int16) at 21, record count (int32) at 57.
                    records = struct.unpack_from(">i", batch, 57)[0]
                    counts["produce.batches"] += 1
                    counts["produce.records"] += records
                    counts["produce.bytes"] += len(batch)
                    counts["produce.compressed_batches"] += 1 if struct.unpack_from(">h", batch, 21)[0] & 7 else 0
                    counts[f"produce.records.{topic}"] += records
        return original(self, request, expect_response)

    conn.AIOKafkaConnection.send = send
    path = os.path.join(out, f"{os.getpid()}.json")
    argv = " ".join(sys.argv)[:200]

    def dump() -> None:
        while True:
            time.sleep(1)
            try:
                with open(path + ".tmp", "w") as f:
                    json.dump({"argv": argv, "time": time.time(), "counts": dict(counts)}, f)
                os.replace(path + ".tmp", path)
            except OSError:
                pass

    threading.Thread(target=dump, name="kafka-counts", daemon=True).start()


if _OUT:
    _install(_OUT)
