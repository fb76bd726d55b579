"""The local stack's passwords: generated once per stack dir into `<stack_dir>/secrets/` (mode 0600, never in git).

`stack.json` holds every password of the stack; `<principal>.env` holds, per principal, the `CES_*` variables a
process running as it needs (`cesdev` feeds them to the processes it starts; a shell can `set -a; . file`).
Only names and locations are ever printed, never the values (docs/security.md).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ces.settings import Settings

# Kafka principals (SCRAM users). `admin` is the broker's own principal and the only super user.
KAFKA_ADMIN = "admin"
KAFKA_WORKER = "ces-worker"
KAFKA_GATEWAY = "ces-gateway"
KAFKA_PRODUCER = "ces-producer"
KAFKA_USERS = (KAFKA_ADMIN, KAFKA_WORKER, KAFKA_GATEWAY, KAFKA_PRODUCER)
# PostgreSQL roles: the cluster's superuser, the owner of every CES object, the application role.
PG_SUPERUSER = "postgres"
PG_OWNER = "ces_owner"
PG_APP = "ces_app"
# Redis ACL users: `ces` (the application's commands only) and `default` (everything, password-protected).
REDIS_APP = "ces"
REDIS_ADMIN = "default"

# Which Kafka principal each process role uses. `admin` is for tools and tests (topics, ACLs, fixtures).
ROLES = {"worker": KAFKA_WORKER, "gateway": KAFKA_GATEWAY, "producer": KAFKA_PRODUCER, "admin": KAFKA_ADMIN}


@dataclass(frozen=True)
class StackSecrets:
    kafka: dict[str, str]
    postgres: dict[str, str]
    redis: dict[str, str]
    # The key the gateway signs its conversion requests with and the worker checks (worker.env, gateway.env).
    request_signing_key: str = ""

    def kafka_password(self, user: str) -> SecretStr:
        return SecretStr(self.kafka[user])


def secrets_dir(settings: Settings) -> Path:
    return settings.stack_dir.resolve() / "secrets"


def _password() -> str:
    # Hex: safe unquoted in URLs, JAAS strings, kafka-storage's --add-scram syntax and shell env files.
    return secrets.token_hex(24)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def load_or_create(settings: Settings) -> StackSecrets:
    """The stack's passwords, generated on first use; later calls read the same file."""
    directory = secrets_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / "stack.json"
    if path.exists():
        data = json.loads(path.read_text())
    else:
        data = {
            "kafka": {user: _password() for user in KAFKA_USERS},
            "postgres": {role: _password() for role in (PG_SUPERUSER, PG_OWNER, PG_APP)},
            "redis": {user: _password() for user in (REDIS_APP, REDIS_ADMIN)},
        }
    if not data.get("signing", {}).get("request"):
        # A stack from before request signing gets its key now; every other secret stays as it was.
        data["signing"] = {"request": secrets.token_hex(32)}
        _write_private(path, json.dumps(data, indent=2) + "\n")
    result = _from_json(data)
    for role in ROLES:
        _write_private(directory / f"{role}.env", "".join(f"{k}={v}\n" for k, v in role_env(result, role).items()))
    return result


def load(settings: Settings) -> StackSecrets | None:
    path = secrets_dir(settings) / "stack.json"
    if not path.exists():
        return None
    return _from_json(json.loads(path.read_text()))


def _from_json(data: dict[str, Any]) -> StackSecrets:
    return StackSecrets(data["kafka"], data["postgres"], data["redis"], data.get("signing", {}).get("request", ""))


def role_env(stack: StackSecrets, role: str) -> dict[str, str]:
    """The `CES_*` credentials of one process role; host, port and database stay those of the settings."""
    user = ROLES[role]
    env = {
        "CES_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CES_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CES_KAFKA_USERNAME": user,
        "CES_KAFKA_PASSWORD": stack.kafka[user],
    }
    if role != "producer":  # an outside service has no business in CES's database or cache
        env["CES_DATABASE_PASSWORD"] = stack.postgres[PG_APP]
        env["CES_REDIS_PASSWORD"] = stack.redis[REDIS_APP]
    if role in ("worker", "gateway") and stack.request_signing_key:
        # Only these two: an outside producer (or a tool acting as admin) must not be able to sign.
        env["CES_REQUEST_SIGNING_KEY"] = stack.request_signing_key
    if role == "admin":
        env["CES_MIGRATION_DATABASE_PASSWORD"] = stack.postgres[PG_OWNER]
    return env


def export_role_env(role: str = "admin") -> None:
    """Act as one principal of the local stack (tests and benchmarks act as its admin): its `CES_*`
    credentials go into the environment unless already set; explicit `CES_*` always win."""
    import os

    stack = load(Settings())
    if stack is not None:
        for key, value in role_env(stack, role).items():
            os.environ.setdefault(key, value)


def with_credentials(settings: Settings, role: str, stack: StackSecrets | None = None) -> Settings:
    """`settings` with the stack's credentials of `role` where the settings have none of their own."""
    stack = stack or load(settings)
    if stack is None:
        return settings
    update: dict[str, object] = {}
    for key, value in role_env(stack, role).items():
        field = key.removeprefix("CES_").lower()
        current = getattr(settings, field)
        if field.endswith("password") or field == "request_signing_key":
            if not current.get_secret_value():
                update[field] = SecretStr(value)
        elif field == "kafka_username":
            if not current:
                update[field] = value
        elif field not in settings.model_fields_set:
            update[field] = value
    return settings.model_copy(update=update)


def other_principal(settings: Settings, role: str, stack: StackSecrets | None = None) -> str | None:
    """The Kafka principal `settings` name when it is not the stack's `role` (else None): explicit `CES_*`
    win over the stack's secrets, so a shell that sourced another role's env file (`producer.env`) would
    otherwise act as that role and fail deep inside Kafka with an authorization error."""
    stack = stack or load(settings)
    if stack is None or not settings.kafka_username:
        return None
    return None if settings.kafka_username == ROLES[role] else settings.kafka_username


def for_probe(settings: Settings, role: str = "admin") -> Settings:
    """The credentials to probe a service with: the stack's own when it has a secrets file (its services
    were made with them, whatever the environment says), else the settings' (an external service)."""
    stack = load(settings)
    if stack is None:
        return settings
    cleared = settings.model_copy(
        update={
            "kafka_username": "",
            "kafka_password": SecretStr(""),
            "database_password": SecretStr(""),
            "migration_database_password": SecretStr(""),
            "redis_password": SecretStr(""),
            "request_signing_key": SecretStr(""),
        }
    )
    return with_credentials(cleared, role, stack)


def process_env(settings: Settings, role: str) -> dict[str, str]:
    """Environment additions for a CES process `cesdev` starts as `role`: the role's credentials win over
    whatever the calling shell has (a developer's admin credentials must not leak into the worker)."""
    stack = load(settings)
    if stack is not None and not stack.request_signing_key:
        stack = load_or_create(settings)  # a stack from before request signing: its key is made now, once
    return role_env(stack, role) if stack is not None else {}
