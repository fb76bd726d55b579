"""`ces worker` starts against the real broker, reports ready, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

from tests.e2e.conftest import StartCes


def test_worker_becomes_ready_and_stops_cleanly_on_sigterm(start_ces: StartCes) -> None:
    worker = start_ces("worker")
    worker.wait_for_output("ces worker ready")
    assert worker.terminate() == 0
    assert "Traceback" not in worker.output()
