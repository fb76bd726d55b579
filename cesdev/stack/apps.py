"""CES's own long-running processes (worker, and later gateway and simulator) started by `cesdev up`."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ces.settings import Settings
from cesdev.stack import process, secrets
from cesdev.stack.system import StackError


@dataclass(frozen=True)
class AppProcess:
    name: str
    argv: tuple[str, ...]
    ready_marker: str  # a line the process logs once it serves
    role: str | None = None  # whose credentials it runs with (cesdev.stack.secrets.ROLES); None: none

    def pid_file(self, settings: Settings) -> Path:
        return settings.stack_dir.resolve() / "run" / f"{self.name}.pid"

    def log_file(self, settings: Settings) -> Path:
        return settings.stack_dir.resolve() / "logs" / f"{self.name}.log"


def ces_apps() -> list[AppProcess]:
    python = sys.executable
    return [
        AppProcess("provider-sim", (python, "-m", "cesdev", "provider-sim", "--live"), "Running on"),
        AppProcess("worker", (python, "-m", "ces", "worker"), "ces worker ready", role="worker"),
        AppProcess("gateway", (python, "-m", "ces", "gateway"), "Running on", role="gateway"),
    ]


def start(settings: Settings, app: AppProcess, *, timeout: float = 120.0) -> str:
    pid_file = app.pid_file(settings)
    if process.running_pid(pid_file) is not None:
        return "already running"
    log = app.log_file(settings)
    offset = log.stat().st_size if log.exists() else 0
    launch(settings, app)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log, "rb") as f:
            f.seek(offset)
            if app.ready_marker.encode() in f.read():
                return "started"
        if process.running_pid(pid_file) is None:
            raise StackError(f"{app.name} exited during start-up; see {log}")
        time.sleep(0.2)
    raise StackError(f"{app.name} was not ready within {timeout:.0f}s; see {log}")


def launch(settings: Settings, app: AppProcess) -> None:
    """Start `app` in the background with its role's credentials, without waiting for it."""
    credentials = secrets.process_env(settings, app.role) if app.role else {}
    # No credential of the calling shell (a developer's admin ones, say) reaches the process: only its role's.
    inherited = {k: v for k, v in os.environ.items() if not (k.startswith("CES_") and _is_credential(k))}
    # Unbuffered, so a ready marker reaches the log file as soon as it is printed.
    env = {**inherited, **credentials, "PYTHONUNBUFFERED": "1"}
    process.spawn(app.argv, pid_file=app.pid_file(settings), log_file=app.log_file(settings), env=env)


def history_backfill() -> AppProcess:
    """`ces rates backfill` of the bundled ECB history (1999 on), as the worker principal (only it may write
    `rates-fetched`). One-shot; idempotent (deterministic rate ids), so a rerun adds nothing."""
    return AppProcess("backfill", (sys.executable, "-m", "ces", "rates", "backfill"), "", role="worker")


def _is_credential(name: str) -> bool:
    return name.endswith("_PASSWORD") or name == "CES_KAFKA_USERNAME" or name.startswith("CES_REQUEST_SIGNING_KEY")


def stop(settings: Settings, app: AppProcess) -> bool:
    return process.stop(app.pid_file(settings), timeout=30)
