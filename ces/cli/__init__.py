"""The `ces` command: CES's processes and operations (the local stack is `cesdev`'s)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from aiokafka.errors import KafkaError
from sqlalchemy.exc import OperationalError

from ces.cli import convert, keys, operations, rates, reconcile, replay
from ces.settings import Settings, get_settings, mask_secrets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ces", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    operations.add_parsers(sub)
    rates.add_parsers(sub)
    replay.add_parsers(sub)
    reconcile.add_parsers(sub)
    keys.add_parsers(sub)
    convert.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(
    args: argparse.Namespace,
    *,
    mask: Callable[[str, Settings], str] = mask_secrets,
    also: tuple[type[Exception], ...] = (),
) -> int:
    """Run a parsed command; an unreachable backend (or one of `also`) is one line on stderr and exit 2.

    Drivers may quote a connection string back: every error text goes through `mask`, so no password is
    ever printed (docs/security.md). `cesdev` passes its own errors and a mask that knows the stack's secrets.
    """
    settings = get_settings()
    try:
        result: int = args.func(args, settings)
    except OperationalError as exc:
        reason = mask(str(exc.orig), settings)
        print(f"error: cannot reach PostgreSQL ({reason}); is the stack up (`cesdev stack up`)?", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"error: cannot reach Kafka ({mask(repr(exc), settings)}); is the stack up?", file=sys.stderr)
        return 2
    except also as exc:
        print(f"error: {mask(str(exc), settings)}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
