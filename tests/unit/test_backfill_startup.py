"""`ces rates backfill` starts on Kafka alone: its modules import no database, cache or HTTP client library."""

from __future__ import annotations

import json
import subprocess
import sys

# What the worker, the gateway and the other commands need and the backfill does not (start-up CPU: the
# backfill's producer paid about a second for them; docs/replay.md "Backfill").
NOT_NEEDED = ("redis", "aiohttp", "alembic", "psycopg2", "faust", "ces.adapters.postgres", "ces.adapters.redis")


def test_the_backfill_command_imports_only_what_it_uses() -> None:
    probe = (
        "import json, sys\n"
        "import ces.bootstrap, ces.cli.rates, ces.adapters.providers.ecb_history, ces.services.backfill\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True).stdout)
    assert "ces.bootstrap" in loaded and "aiokafka" in loaded
    assert [m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_NEEDED)] == []
