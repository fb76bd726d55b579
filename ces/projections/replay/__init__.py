"""`ces replay`: rebuild the rate and audit projections from their topics into a fresh schema, resumably.

Rules:
- Isolation from live. The replay reads through its own `EventSource`: manual partition assignment, no
  consumer group, no offset commits, so the live workers' groups never see it. It writes only to its
  `ReplayTarget`, a fresh schema, and refuses the live schema as target.
- Same rows as live. The PostgreSQL target writes rates with `RateProjector.project`, the live code, and
  decisions by COPY under `AuditStore.record`'s rules (`ces/adapters/postgres/bulk_audit.py`), so a
  replayed row is exactly what the live worker would have written for the same event.
- A consistent cut. The end offset of every partition is captured when the replay starts, audit topics
  before `rates-fetched`: an audit published before its topics' cut was decided on rates that were
  already on `rates-fetched`, so they are before the rates' cut too and every foreign key resolves.
  Events published after the cut are left for a later run (which resumes).
- Rates before audits: `conversion_audit` references `exchange_rate` by foreign key.
- Idempotent: both projectors skip what is already there (`ON CONFLICT DO NOTHING`, first decision
  stands), so a re-run, a duplicate event or a re-processed batch has no second effect.
- Checkpoints: per partition, the offset to read next, kept in the target. A batch's checkpoint is
  written in the same transaction as its rows (`ReplayTarget.write`), so rows and checkpoint commit
  together or not at all. A killed replay, re-run with the same target, resumes from the checkpoint;
  `--restart` starts over.
- Undecodable messages are counted per topic and reason, logged, and skipped; events the database
  refuses (a constraint) are retried one by one, and the refused ones counted and skipped. Events the
  rate projection refuses itself (implausible date, conflicting republication, revocation of an unknown
  rate: the live worker dead-letters them) are counted as refused and skipped the same way.
- Revocations (`RateRevoked` on `rates-fetched`) are applied in topic order like the rates they name.

The orchestration (`run.py`, and `parallel.py` for `--jobs`) and its vocabulary (`model.py`) know no
driver: they talk to the Protocols in `ports.py`. The adapters are `ces/adapters/kafka/topic_source.py`,
`ces/adapters/postgres/replay_target.py` and `replay_constraints.py`, the terminal views
`ces/cli/replay_view.py`; `ces.bootstrap.build_replay` wires them.
"""

from ces.projections.replay.model import (
    CHECKPOINT_TABLE,
    PHASES,
    PROJECTIONS,
    BatchRefused,
    Partition,
    Phase,
    PhaseReport,
    Prepared,
    PreparedBatch,
    Record,
    ReplayError,
    ReplayOptions,
    ReplayReport,
    Written,
    check_schema_name,
    parse_since,
)
from ces.projections.replay.ports import Batcher, EventSource, Preparer, ProgressSink, ReplayTarget
from ces.projections.replay.run import Replay

__all__ = [
    "CHECKPOINT_TABLE",
    "PHASES",
    "PROJECTIONS",
    "BatchRefused",
    "Batcher",
    "EventSource",
    "Partition",
    "Phase",
    "PhaseReport",
    "Prepared",
    "PreparedBatch",
    "Preparer",
    "ProgressSink",
    "Record",
    "Replay",
    "ReplayError",
    "ReplayOptions",
    "ReplayReport",
    "ReplayTarget",
    "Written",
    "check_schema_name",
    "parse_since",
]
