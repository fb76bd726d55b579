"""The local stack's PostgreSQL: a cluster that outlives its checkout's secrets."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from ces.settings import Settings
from cesdev.stack import secrets, system
from cesdev.stack.postgres import Postgres
from tests.e2e.conftest import free_port


@pytest.mark.skipif(not system.is_root(), reason="the cluster outside the stack dir is only made as root")
def test_a_checkout_cloned_again_at_the_same_path_takes_over_the_cluster_left_there() -> None:
    """The cluster lives under the postgres home, named after the stack dir's path, so a checkout removed and
    cloned again at the same path finds the old cluster but none of its passwords. The new secrets must be set
    on it at start (a fresh CI clone at a reused path failed to start its stack so)."""
    stack_dir = Path(tempfile.mkdtemp(prefix="ces-pg-reclone-"))
    port = free_port()
    assert port != 15432
    settings = Settings(
        stack_dir=stack_dir,
        database_url=f"postgresql+psycopg2://ces_app@127.0.0.1:{port}/ces",
        migration_database_url=f"postgresql+psycopg2://ces_owner@127.0.0.1:{port}/ces",
    )
    postgres = Postgres(settings)
    assert not postgres.home.is_relative_to(stack_dir)
    try:
        postgres.start()
        first = secrets.load(settings)
        assert first is not None and postgres.answers()
        postgres.stop()

        shutil.rmtree(secrets.secrets_dir(settings))  # what a new clone at the same path has: no secrets
        postgres.start()
        second = secrets.load(settings)
        assert second is not None
        assert second.postgres != first.postgres  # new passwords, and the old cluster answers to them
        assert postgres.answers()
    finally:
        postgres.stop()
        shutil.rmtree(postgres.home, ignore_errors=True)
        shutil.rmtree(stack_dir, ignore_errors=True)
