"""API keys in PostgreSQL (`api_key`): the `ApiKeyStore` port. Only hashes are stored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from ces.adapters.postgres.tables import api_key
from ces.events.base import utc_now
from ces.services.api_keys import ApiKey, KeyNameTaken, Scope


class PostgresApiKeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, name: str, scopes: frozenset[Scope], digest: bytes) -> ApiKey:
        key = ApiKey(uuid4(), name, scopes, utc_now())
        row = {
            "id": key.id,
            "name": name,
            "key_hash": digest,
            "scopes": sorted(s.value for s in scopes),
            "created_at": key.created_at,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(api_key.insert(), row)
        except IntegrityError as exc:
            raise KeyNameTaken(
                f"a key named {name!r} exists (names are never reused; revoked keys keep theirs)"
            ) from exc
        return key

    def find(self, digest: bytes) -> ApiKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_key).where(api_key.c.key_hash == digest)).mappings().first()
        return _key(row) if row else None

    def all(self) -> Sequence[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_key).order_by(api_key.c.created_at)).mappings().all()
        return [_key(r) for r in rows]

    def revoke(self, key_id: UUID) -> ApiKey | None:
        with self.engine.begin() as conn:
            conn.execute(
                update(api_key)
                .where(api_key.c.id == key_id, api_key.c.revoked_at.is_(None))
                .values(revoked_at=utc_now())
            )
            row = conn.execute(select(api_key).where(api_key.c.id == key_id)).mappings().first()
        return _key(row) if row else None


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        scopes=frozenset(Scope(s) for s in row["scopes"] if s in Scope.__members__.values()),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
