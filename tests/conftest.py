"""Fixtures shared by every test layer."""

from __future__ import annotations

import uuid

import pytest

from ces.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def unique() -> str:
    """A short random suffix so tests never share topics, groups, schemas or keys."""
    return uuid.uuid4().hex[:10]
