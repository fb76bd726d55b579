"""The local Redis, from the Debian package: loopback only, protected mode, ACL users with passwords."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from ces.settings import Settings
from cesdev.stack import process, secrets, system
from cesdev.stack.secrets import REDIS_ADMIN, REDIS_APP, StackSecrets
from cesdev.stack.services import Endpoint, wait_until

# What the application (`ces.adapters.redis.rate_cache`, the gateway's readiness) sends, and no more: the
# connection handshake, the rate hashes and the revoked sets, the two Lua scripts (EVALSHA, falling back to
# EVAL/SCRIPT LOAD), and the gateway's token buckets (`ces.adapters.redis.rate_limit`: HMGET, HSET, PEXPIRE,
# TIME in a script), and the worker's tracking of the rate keys (CLIENT TRACKING, BCAST on the key prefix:
# `ces.adapters.redis.rate_tracking`). Scripts run with the caller's ACL, so they cannot reach beyond these
# commands and keys.
APP_COMMANDS = (
    "-@all +ping +hello +auth +select +client|setname +client|tracking +hget +hset +hgetall +del +sadd "
    "+sismember +evalsha +eval +script|load +script|exists +hmget +pexpire +time"
)


def acl_file_text(stack: StackSecrets, key_prefix: str) -> str:
    def sha(password: str) -> str:
        return hashlib.sha256(password.encode()).hexdigest()

    return (
        # The `default` user (what a client without a user name is) is the admin: every command, password only.
        f"user {REDIS_ADMIN} on #{sha(stack.redis[REDIS_ADMIN])} ~* &* +@all\n"
        f"user {REDIS_APP} on #{sha(stack.redis[REDIS_APP])} ~{key_prefix}* resetchannels {APP_COMMANDS}\n"
    )


class Redis:
    """A redis-server without persistence: the cache is derived state, rebuilt from PostgreSQL."""

    name = "redis"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        parts = urlsplit(settings.redis_url)
        self._endpoint = Endpoint(parts.hostname or "127.0.0.1", parts.port or 6379)
        self.root = settings.stack_dir.resolve() / "redis"
        self.logs = settings.stack_dir.resolve() / "logs"

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    def pid_file(self) -> Path:
        return self.settings.stack_dir.resolve() / "run" / "redis.pid"

    def start(self) -> None:
        server = system.ensure_redis()
        stack = secrets.load_or_create(self.settings)
        self.root.mkdir(parents=True, exist_ok=True)
        acl_file = self.root / "users.acl"
        fd = os.open(acl_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(acl_file_text(stack, self.settings.redis_key_prefix))
        process.spawn(
            [
                server,
                "--bind",
                self.endpoint.host,
                "--port",
                str(self.endpoint.port),
                "--dir",
                str(self.root),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--aclfile",
                str(acl_file),
            ],
            pid_file=self.pid_file(),
            log_file=self.logs / "redis.log",
        )
        wait_until(self.answers, timeout=30, what="Redis", log=self.logs / "redis.log")

    def answers(self) -> bool:
        if not self.endpoint.accepts_connections():
            return False
        import redis

        settings = secrets.for_probe(self.settings)
        try:
            client = redis.Redis.from_url(settings.redis_dsn, socket_timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def stop(self) -> bool:
        return process.stop(self.pid_file())
