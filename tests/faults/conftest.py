"""Fault suite fixtures: one private stack per session (never the shared one), one CES deployment per scenario."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import harness
from tests.faults.harness import Deployment, Observer, PrivateStack

pytestmark = pytest.mark.faults


@pytest.fixture(scope="session")
def private_stack() -> Iterator[PrivateStack]:
    stack = PrivateStack()
    try:
        stack.up()
        migrated = stack.ces("db", "upgrade")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        yield stack
    finally:
        stack.down()
        shutil.rmtree(stack.dir, ignore_errors=True)
        # As root the cluster lives under the postgres user's home, outside the stack dir.
        shutil.rmtree(stack.postgres().home, ignore_errors=True)


@pytest.fixture
def deployment(private_stack: PrivateStack, unique: str, tmp_path: Path) -> Iterator[Deployment]:
    # A scenario before this one may have failed with a service still stopped.
    private_stack.up()
    d = Deployment(private_stack, unique, tmp_path)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def observer(deployment: Deployment) -> Iterator[Observer]:
    obs = Observer(deployment)
    try:
        yield obs
    finally:
        obs.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if harness.RESULTS:
        terminalreporter.section("fault scenarios")
        terminalreporter.write_line(harness.table())
