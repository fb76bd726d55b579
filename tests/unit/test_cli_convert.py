"""`ces convert`'s command: what it refuses before it produces anything."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from ces.cli import convert
from ces.settings import Settings


@pytest.mark.parametrize("out", ["a directory", "a missing folder"])
def test_an_unwritable_out_is_refused_before_any_request_is_produced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str
) -> None:
    source = tmp_path / "requests.csv"
    source.write_bytes(b"base_currency,target_currency,amount\nUSD,EUR,1\n")
    produced: list[Any] = []

    async def converting(lines: list[Any], settings: Settings, timeout: float) -> list[dict[str, Any]]:
        produced.extend(lines)  # the real one produces to Kafka: results that would then be lost
        return [{"outcome": "audited"} for _ in lines]

    monkeypatch.setattr(convert, "_convert", converting)
    target = tmp_path if out == "a directory" else tmp_path / "missing" / "results.ndjson"
    args = argparse.Namespace(file=source, out=target, format=None, timeout=1.0)
    assert convert.cmd_convert(args, Settings()) == 2
    assert produced == []
