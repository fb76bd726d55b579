"""Benchmark: backfill the full ECB history, end to end.

Starts a worker on an isolated schema / topic prefix / key prefix, runs `ces rates backfill` over the whole
bundled history (every day since 1999, every currency), and prints events/s produced and rows/s projected
(first row to last row committed). Needs the stack (`cesdev stack up`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ces.adapters.postgres import migrate
from ces.adapters.providers.ecb_history import load_history
from ces.settings import Settings
from cesdev.stack.secrets import export_role_env


def main() -> None:
    export_role_env("admin")  # the local stack's credentials, unless CES_* are set
    settings = Settings()
    run = uuid.uuid4().hex[:8]
    schema = f"bench_{run}"
    migrate.upgrade(settings.migration_database_dsn, schema=schema)
    url = make_url(settings.database_dsn).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    env = {
        **os.environ,
        "CES_APP_ID": f"bench-{run}",
        "CES_TOPIC_PREFIX": f"bench-{run}-",
        "CES_REDIS_KEY_PREFIX": f"bench-{run}:",
        "CES_DATABASE_URL": url_text,
        "CES_PROVIDER_URL": "http://127.0.0.1:9",  # no live fetches during the benchmark
        "CES_FETCH_MAX_ATTEMPTS": "1",
        "CES_WORKER_WEB_PORT": "16066",
        "CES_LOG_LEVEL": "WARNING",
    }
    history = load_history()
    expected = sum(len(r) for r in history.rates.values())
    print(f"history: {len(history.days)} days, {expected} rates")
    engine = create_engine(url_text)
    worker = subprocess.Popen(
        [sys.executable, "-m", "ces", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "ces", "rates", "backfill", "--start", "1999-01-01"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        print(out.stdout.strip())
        first_row_at = None
        count = 0
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                count = conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one()
            if count and first_row_at is None:
                first_row_at = time.monotonic()
            if count >= expected:
                break
            time.sleep(0.5)
        done = time.monotonic()
        print(f"rows projected: {count} of {expected}")
        print(
            f"end to end (backfill start -> last row committed): {done - started:.1f}s, "
            f"{count / (done - started):,.0f} rows/s"
        )
        if first_row_at is not None:
            print(
                f"projection (first row -> last row): {done - first_row_at:.1f}s, "
                f"{count / max(done - first_row_at, 1e-9):,.0f} rows/s"
            )
    finally:
        worker.terminate()
        worker.wait(60)
        engine.dispose()
        admin = create_engine(settings.migration_database_dsn)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
