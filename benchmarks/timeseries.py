"""Benchmark: `GET /v1/timeseries` over the whole bundled history (1999-2026), one pair and every symbol.

Loads the history into a private worker + gateway (`history_stack`), then prints, per request, the time to
the first byte and to the last, the body size, and the gateway's peak resident memory before and after
(it must not grow with the range: the body is streamed). Also `GET /v1/fluctuation` over the same range.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from benchmarks.history_stack import HistoryStack, history_stack

CASES = {
    "one pair EUR->USD": "base=EUR&symbols=USD",
    "one cross USD->JPY": "base=USD&symbols=JPY",
    "all symbols, base EUR": "base=EUR",
    "all symbols, base EUR, provenance=false": "base=EUR&provenance=false",
    "all symbols, base USD (crosses)": "base=USD",
}
RANGE = "start=1999-01-01&end=2026-12-31"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fetch(stack: HistoryStack, path: str) -> tuple[float, float, int]:
    request = urllib.request.Request(stack.url + path, headers={"Authorization": f"Bearer {stack.key}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        first = response.read(1)
        first_at = time.perf_counter()
        size = len(first)
        while chunk := response.read(1 << 16):
            size += len(chunk)
    return first_at - started, time.perf_counter() - started, size


def measure(stack: HistoryStack, repeat: int = 3) -> None:
    print(f"history: {stack.rows:,} rows; gateway peak RSS before: {peak_rss_mib(stack.gateway_pid):.0f} MiB")
    print("| request (1999-01-01..2026-12-31) | first byte s | total s (best of 3) | body MB |")
    print("|---|---|---|---|")
    for name, query in {**CASES, "fluctuation, all symbols": "FLUCT"}.items():
        path = f"/v1/fluctuation?base=EUR&{RANGE}" if query == "FLUCT" else f"/v1/timeseries?{query}&{RANGE}"
        runs = [fetch(stack, path) for _ in range(repeat)]
        best = min(runs, key=lambda r: r[1])
        print(f"| {name} | {best[0]:.2f} | {best[1]:.2f} | {best[2] / 1e6:.1f} |")
    print(f"gateway peak RSS after: {peak_rss_mib(stack.gateway_pid):.0f} MiB")


def main() -> None:
    with history_stack() as stack:
        measure(stack)


if __name__ == "__main__":
    main()
