"""End-to-end: CES processes started as a user starts them, each run isolated by app id and topic prefix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


class RunningProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, marker: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"{marker!r} not seen within {timeout}s:\n{self.output()[-3000:]}")

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


StartCes = Callable[..., RunningProcess]


@pytest.fixture
def start_ces(tmp_path: Path, unique: str) -> Iterator[StartCes]:
    """Start `ces <args>` as a subprocess with an isolated app id and topic prefix."""
    started: list[RunningProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> RunningProcess:
        log = tmp_path / f"ces-{len(started)}.log"
        full_env = {
            **os.environ,
            "CES_APP_ID": f"e2e-{unique}",
            "CES_TOPIC_PREFIX": f"e2e-{unique}-",
            "CES_WORKER_WEB_PORT": str(20000 + len(started) + (os.getpid() % 20000)),
            **(env or {}),
        }
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ces", *args], stdout=out, stderr=subprocess.STDOUT, env=full_env
            )
        running = RunningProcess(proc, log)
        started.append(running)
        return running

    yield start
    for running in started:
        running.terminate()
