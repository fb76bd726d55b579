"""The `ces` command: CES's processes and operations (the local stack is `cesdev`'s)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiokafka.errors import KafkaError
from sqlalchemy.exc import OperationalError

from ces.cli import keys, operations, rates, reconcile, replay
from ces.settings import get_settings, mask_secrets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ces", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    operations.add_parsers(sub)
    rates.add_parsers(sub)
    replay.add_parsers(sub)
    reconcile.add_parsers(sub)
    keys.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    try:
        result: int = args.func(args, settings)
    except OperationalError as exc:
        # Drivers may quote a connection string back: never print a password (docs/security.md).
        reason = mask_secrets(str(exc.orig), settings)
        print(f"error: cannot reach PostgreSQL ({reason}); is the stack up (`cesdev stack up`)?", file=sys.stderr)
        return 2
    except KafkaError as exc:
        reason = mask_secrets(repr(exc), settings)
        print(f"error: cannot reach Kafka ({reason}); is the stack up (`cesdev stack up`)?", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
