"""A `--jobs` audit worker process imports what it loads with, not the migrations (alembic)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_a_replay_worker_process_does_not_import_alembic() -> None:
    # What a spawned worker imports: the pickled `Replay` class and `ReplayWorkerParts`, then what its factory
    # builds (`_replay_parts`). Only the main process migrates the target (docs/replay.md, "Fixed costs").
    probe = (
        "import json, sys\n"
        "import ces.bootstrap, ces.projections.replay.run, ces.projections.replay.parallel\n"
        "import ces.adapters.kafka.topic_source, ces.adapters.postgres.replay_target\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True).stdout)
    assert "ces.adapters.postgres.replay_target" in loaded and "sqlalchemy" in loaded
    assert [m for m in loaded if m == "alembic" or m.startswith("alembic.")] == []
    assert "ces.adapters.postgres.migrate" not in loaded
