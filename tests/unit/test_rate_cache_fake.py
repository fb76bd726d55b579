"""The in-memory rate cache passes the rate cache's contract (its Redis twin: tests/integration)."""

from __future__ import annotations

import pytest

from ces.services.ports import RateCache
from tests.contracts.rate_cache import RateCacheContract
from tests.fakes import FakeRateCache


class TestFakeRateCache(RateCacheContract):
    @pytest.fixture
    def cache(self) -> RateCache:
        return FakeRateCache()

    @pytest.fixture
    def dead_cache(self) -> RateCache:
        return FakeRateCache(down=True)
