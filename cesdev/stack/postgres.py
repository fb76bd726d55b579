"""The local PostgreSQL: a private cluster (initdb) from the Debian packages, with a `ces` role and database."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from ces.settings import Settings
from cesdev.stack import process, system
from cesdev.stack.services import Endpoint, wait_until


class Postgres:
    """A private PostgreSQL cluster (initdb) with a `ces` role and database."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = make_url(settings.database_url)
        self.root = settings.stack_dir.resolve() / "postgres"
        self.logs = settings.stack_dir.resolve() / "logs"
        self._endpoint = Endpoint(self.url.host or "127.0.0.1", self.url.port or 5432)

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def pid_file(self) -> Path:
        return self.settings.stack_dir.resolve() / "run" / "postgres.pid"

    def _as_owner(self, argv: list[str]) -> list[str]:
        # initdb and postgres refuse to run as root; the Debian package creates `postgres`.
        if system.is_root():
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def start(self) -> None:
        bin_dir = system.ensure_postgres()
        fresh = not (self.data_dir / "PG_VERSION").exists()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        if system.is_root():
            for directory in system.allow_traversal(self.root.parent):
                print(f"  (gave others search permission on {directory} so the postgres user can reach its data)")
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            log_file = self.logs / "postgres.log"
            log_file.touch()
            shutil.chown(log_file, "postgres", "postgres")
        if fresh:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if system.is_root():
                shutil.chown(self.data_dir, "postgres", "postgres")
            system.run(
                self._as_owner(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        "postgres",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                what="initdb",
            )
        options = (
            f"-p {self.endpoint.port} -k {self.socket_dir} "
            f"-c listen_addresses={self.endpoint.host} -c max_connections=200 "
            "-c fsync=on -c shared_buffers=256MB"
        )
        system.run(
            self._as_owner(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.logs / "postgres.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            what=f"starting PostgreSQL (log: {self.logs / 'postgres.log'})",
        )
        pid_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        self.pid_file().parent.mkdir(parents=True, exist_ok=True)
        self.pid_file().write_text(pid_line.strip() + "\n")
        self._ensure_role_and_database(bin_dir)
        wait_until(self.answers, timeout=30, what="PostgreSQL", log=self.logs / "postgres.log")

    def _psql(self, bin_dir: Path, sql: str, db: str = "postgres") -> str:
        out = system.run(
            self._as_owner(
                [
                    str(bin_dir / "psql"),
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(self.endpoint.port),
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-tAc",
                    sql,
                ]
            ),
            what="psql",
        )
        return out.strip()

    def _ensure_role_and_database(self, bin_dir: Path) -> None:
        user = self.url.username or "ces"
        password = self.url.password or "ces"
        database = self.url.database or "ces"
        quoted_pw = str(password).replace("'", "''")
        if self._psql(bin_dir, f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'") != "1":
            self._psql(bin_dir, f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{quoted_pw}' CREATEDB")
        if self._psql(bin_dir, f"SELECT 1 FROM pg_database WHERE datname = '{database}'") != "1":
            self._psql(bin_dir, f'CREATE DATABASE "{database}" OWNER "{user}"')

    def answers(self) -> bool:
        if not self.endpoint.accepts_connections():
            return False
        import psycopg2

        try:
            conn = psycopg2.connect(
                self.url.set(drivername="postgresql").render_as_string(hide_password=False),
                connect_timeout=3,
            )
        except psycopg2.Error:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return bool(cur.fetchone() == (1,))
        finally:
            conn.close()

    def stop(self) -> bool:
        if process.running_pid(self.pid_file()) is None:
            self.pid_file().unlink(missing_ok=True)
            return False
        bin_dir = system.postgres_bin_dir()
        if bin_dir is not None:
            subprocess.run(
                self._as_owner([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
                check=False,
                stdout=subprocess.DEVNULL,
            )
        process.stop(self.pid_file())
        return True
