"""The async recorder resolves PostgreSQL's host name on the loop, never inside libpq's blocking connect."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from ces.adapters.postgres.async_record import resolved


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "/var/run/postgresql"},
        {"host": "db1,db2"},
        {"host": "db.example", "hostaddr": "10.0.0.5"},
        {"dbname": "ces"},
    ],
)
def test_what_needs_no_lookup_passes_through_unchanged(kwargs: dict[str, Any]) -> None:
    assert asyncio.run(resolved(kwargs)) == kwargs


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1"])
def test_an_ip_literal_is_its_own_address(ip: str) -> None:
    assert asyncio.run(resolved({"host": ip, "port": 5432})) == {"host": ip, "hostaddr": ip, "port": 5432}


def test_a_name_becomes_every_address_it_resolves_to_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, Any]] = []

    async def getaddrinfo(self: Any, host: str, port: Any, **kw: Any) -> list[Any]:
        asked.append((host, kw.get("type")))
        stream = socket.SOCK_STREAM
        return [
            (socket.AF_INET6, stream, 6, "", ("::1", 0, 0, 0)),
            (socket.AF_INET, stream, 6, "", ("127.0.0.1", 0)),
            (socket.AF_INET, stream, 6, "", ("127.0.0.1", 0)),  # a resolver may repeat an address
        ]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    out = asyncio.run(resolved({"host": "db.internal", "port": 5432, "user": "ces"}))
    assert out == {"host": "db.internal,db.internal", "hostaddr": "::1,127.0.0.1", "port": 5432, "user": "ces"}
    assert asked == [("db.internal", socket.SOCK_STREAM)]


def test_localhost_resolves_for_real() -> None:
    out = asyncio.run(resolved({"host": "localhost"}))
    addresses = out["hostaddr"].split(",")
    assert addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    assert out["host"].split(",") == ["localhost"] * len(addresses)
