"""The local Redis, from the Debian package, bound to loopback."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ces.settings import Settings
from cesdev.stack import process, system
from cesdev.stack.services import Endpoint, wait_until


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
        self.root.mkdir(parents=True, exist_ok=True)
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
                "no",
            ],
            pid_file=self.pid_file(),
            log_file=self.logs / "redis.log",
        )
        wait_until(self.answers, timeout=30, what="Redis", log=self.logs / "redis.log")

    def answers(self) -> bool:
        if not self.endpoint.accepts_connections():
            return False
        import redis

        try:
            client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def stop(self) -> bool:
        return process.stop(self.pid_file())
