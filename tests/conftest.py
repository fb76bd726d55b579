"""Fixtures shared by every test layer."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import settings as hypothesis_settings

from ces.settings import Settings
from cesdev.stack.secrets import export_role_env

# No per-example deadline: timing is a benchmark's business, and a 2-core machine shared with a broker and
# two databases makes any deadline flaky (one failed with DeadlineExceeded under load).
hypothesis_settings.register_profile("ces", deadline=None)
hypothesis_settings.load_profile("ces")


# Tests act as the local stack's admin (topics, ACLs, schemas as the owner role); explicit CES_* win. The CES
# processes they start get their own principal's credentials instead (`tests.support.role_env`).
export_role_env("admin")


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def unique() -> str:
    """A short random suffix so tests never share topics, groups, schemas or keys."""
    return uuid.uuid4().hex[:10]
