"""Fixtures of the unit layer (fakes only)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.gateway_clients import Gateways


@pytest.fixture
async def gateways() -> AsyncIterator[Gateways]:
    """Gateways served over fakes (`gateways.start(...)`), all closed when the test ends."""
    started = Gateways()
    yield started
    await started.close()
