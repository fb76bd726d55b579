"""`ces keys create|list|revoke`: the gateway's API keys. A new key is printed once; only its hash is kept."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from uuid import UUID

from ces.settings import Settings


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import create_engine

    from ces.adapters.postgres.api_keys import PostgresApiKeyStore
    from ces.services.api_keys import KeyNameTaken, create_key, parse_scopes

    # Managing keys writes `api_key`, which the application role may only read: the owner role does it.
    engine = create_engine(settings.migration_database_dsn, pool_pre_ping=True)
    store = PostgresApiKeyStore(engine)
    try:
        if args.action == "create":
            try:
                key, secret = create_key(store, args.name, parse_scopes(args.scopes))
            except (KeyNameTaken, ValueError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            scopes = ",".join(sorted(s.value for s in key.scopes))
            print(f"created key {key.id} {key.name!r} (scopes {scopes}); it is shown this once, keep it safe:")
            print(secret)
            return 0
        if args.action == "list":
            for key in store.all():
                state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
                scopes = ",".join(sorted(s.value for s in key.scopes))
                print(f"{key.id}  {key.name:<24} {scopes:<14} created {key.created_at.isoformat()}  {state}")
            return 0
        try:
            key_id = UUID(args.key_id)
        except (TypeError, ValueError):
            print(f"error: {args.key_id!r} is not a key id (`ces keys list` shows them)", file=sys.stderr)
            return 1
        revoked = store.revoke(key_id)
        if revoked is None:
            print(f"error: no key {key_id}", file=sys.stderr)
            return 1
        print(
            f"revoked key {revoked.id} {revoked.name!r}; gateways refuse it within "
            f"{settings.api_key_cache_seconds:g}s (CES_API_KEY_CACHE_SECONDS)"
        )
        return 0
    finally:
        engine.dispose()


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="the gateway's API keys (docs/security.md)")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="mint a key; printed once, only its hash is stored")
    create.add_argument("--name", required=True, help="who or what uses it (unique, kept after revocation)")
    create.add_argument("--scopes", default="convert,read", help="comma-separated: convert, read")
    create.set_defaults(func=cmd_keys)
    keys_sub.add_parser("list", help="every key: id, name, scopes, state (never the secret)").set_defaults(
        func=cmd_keys
    )
    revoke = keys_sub.add_parser("revoke", help="revoke a key (kept, never deleted)")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_keys)
