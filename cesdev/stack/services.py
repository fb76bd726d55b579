"""What every service of the local stack is: an endpoint to probe, a status to print, start and stop."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cesdev.stack.system import StackError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK or self.host.startswith("127.")

    def accepts_connections(self, timeout: float = 0.5) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                return True
        except OSError:
            return False


@dataclass(frozen=True)
class Status:
    name: str
    address: str
    managed: bool
    answers: bool
    detail: str = ""


class Service(Protocol):
    name: str

    @property
    def endpoint(self) -> Endpoint: ...

    def pid_file(self) -> Path: ...

    def start(self) -> None: ...

    def answers(self) -> bool: ...

    def stop(self) -> bool: ...


def wait_until(check: object, *, timeout: float, what: str, log: Path | None = None) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    hint = f"; see {log}" if log else ""
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{hint}")
