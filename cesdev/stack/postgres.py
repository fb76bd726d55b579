"""The local PostgreSQL: a private cluster (initdb) from the Debian packages, password-only, with CES's roles.

Authentication is scram-sha-256 on TCP and on the socket (no `trust` anywhere). Roles: the superuser
`postgres`, `ces_owner` (owns the database and every object, runs migrations) and `ces_app` (what the worker
and gateway use; its table privileges come from the migrations, `ces.migrations.grants`). Passwords are
the stack's (`cesdev.stack.secrets`). Running as root, the cluster lives under the `postgres` user's home
(`/var/lib/postgresql/ces-<hash of the stack dir>/`), reachable by the server without changing the permissions
of any directory outside the stack; the stack dir keeps a symlink to it.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from ces.settings import Settings
from cesdev.stack import process, secrets, system
from cesdev.stack.secrets import PG_APP, PG_OWNER, PG_SUPERUSER, StackSecrets
from cesdev.stack.services import Endpoint, wait_until

HBA = """# Written by cesdev: password (scram-sha-256) authentication only, socket and loopback.
local   all all                scram-sha-256
host    all all 127.0.0.1/32   scram-sha-256
host    all all ::1/128        scram-sha-256
"""


class Postgres:
    """A private PostgreSQL cluster (initdb) with the `ces` database and CES's two roles."""

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
    def home(self) -> Path:
        """Where the cluster's files are: the stack dir itself, or under the postgres user's home as root."""
        if not system.is_root():
            return self.root
        try:
            postgres_home = pwd.getpwnam("postgres").pw_dir
        except KeyError:  # the Debian package (which creates the user) is not installed yet
            return self.root
        digest = hashlib.sha256(str(self.settings.stack_dir.resolve()).encode()).hexdigest()[:12]
        return Path(postgres_home) / f"ces-{digest}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        # The server writes its log as `postgres`: as root, next to its data (linked from the stack's logs).
        return self.home / "postgres.log" if system.is_root() else self.logs / "postgres.log"

    def pid_file(self) -> Path:
        return self.settings.stack_dir.resolve() / "run" / "postgres.pid"

    def _as_owner(self, argv: list[str]) -> list[str]:
        # initdb and postgres refuse to run as root; the Debian package creates `postgres`.
        if system.is_root():
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _prepare_home(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        if not system.is_root():
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            return
        self.home.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(self.home, "postgres", "postgres")
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(self.socket_dir, "postgres", "postgres")
        old = self.root / "data"
        if old.is_dir() and not old.is_symlink() and not self.data_dir.exists():
            # A cluster made by an earlier cesdev inside the stack dir: move it where postgres can reach it.
            shutil.move(str(old), str(self.data_dir))
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.data_dir)], check=True)
            print(f"  (moved the PostgreSQL cluster from {old} to {self.data_dir})")
        for link, target in ((self.root / "data", self.data_dir), (self.logs / "postgres.log", self.log_file)):
            if link.is_symlink() or not link.exists():
                link.unlink(missing_ok=True)
                link.symlink_to(target)

    def start(self) -> None:
        bin_dir = system.ensure_postgres()
        stack = secrets.load_or_create(self.settings)
        self._prepare_home()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, stack)
        else:
            self._secure_existing(bin_dir, stack)
        self._write_hba()
        options = (
            f"-p {self.endpoint.port} -k {self.socket_dir} "
            f"-c listen_addresses={self.endpoint.host} -c max_connections=200 "
            "-c fsync=on -c shared_buffers=256MB -c password_encryption=scram-sha-256"
        )
        system.run(
            self._as_owner(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            what=f"starting PostgreSQL (log: {self.log_file})",
        )
        pid_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        self.pid_file().parent.mkdir(parents=True, exist_ok=True)
        self.pid_file().write_text(pid_line.strip() + "\n")
        self._ensure_roles_and_database(stack)
        wait_until(self.answers, timeout=30, what="PostgreSQL", log=self.log_file)

    def _initdb(self, bin_dir: Path, stack: StackSecrets) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if system.is_root():
            shutil.chown(self.data_dir, "postgres", "postgres")
        with self._password_file(stack.postgres[PG_SUPERUSER]) as pwfile:
            system.run(
                self._as_owner(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        PG_SUPERUSER,
                        f"--pwfile={pwfile}",
                        "--auth-local=scram-sha-256",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                what="initdb",
            )

    def _secure_existing(self, bin_dir: Path, stack: StackSecrets) -> None:
        """Give an existing cluster's superuser the password of the secrets file, offline, at every start.

        The secrets file is the source of truth for every role (the others get theirs at every start too), and
        the cluster lives outside the stack dir: a checkout removed and cloned again at the same path finds its
        predecessor's cluster with passwords that went with the old checkout (a fresh CI clone failed so). A
        cluster from before passwords (trust on its socket) is secured the same way."""
        password = stack.postgres[PG_SUPERUSER].replace("'", "''")
        subprocess.run(
            self._as_owner([str(bin_dir / "postgres"), "--single", "-D", str(self.data_dir), "postgres"]),
            input=f"ALTER ROLE {PG_SUPERUSER} PASSWORD '{password}';\n",
            text=True,
            capture_output=True,
            check=True,
        )

    def _write_hba(self) -> None:
        hba = self.data_dir / "pg_hba.conf"
        if system.is_root():
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "tee", str(hba)],
                input=HBA,
                text=True,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        else:
            hba.write_text(HBA)

    def _password_file(self, password: str) -> _TempSecret:
        return _TempSecret(password, owner="postgres" if system.is_root() else None)

    def _superuser_connect(self, stack: StackSecrets, database: str = "postgres") -> object:
        import psycopg2

        conn = psycopg2.connect(
            host=self.endpoint.host,
            port=self.endpoint.port,
            user=PG_SUPERUSER,
            password=stack.postgres[PG_SUPERUSER],
            dbname=database,
            connect_timeout=5,
        )
        conn.autocommit = True
        return conn

    def _ensure_roles_and_database(self, stack: StackSecrets) -> None:
        from psycopg2 import sql

        database = self.url.database or "ces"
        conn = self._superuser_connect(stack)
        try:
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                for role in (PG_OWNER, PG_APP):
                    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                    verb = "ALTER" if cur.fetchone() else "CREATE"
                    # Setting the password every start is what rotation needs: edit the secrets file, restart.
                    cur.execute(
                        sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s").format(
                            sql.SQL(verb), sql.Identifier(role)
                        ),
                        (stack.postgres[role],),
                    )
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(database), sql.Identifier(PG_OWNER)
                        )
                    )
                else:
                    cur.execute(
                        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                            sql.Identifier(database), sql.Identifier(PG_OWNER)
                        )
                    )
                cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
                cur.execute(
                    sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                        sql.Identifier(database), sql.Identifier(PG_APP)
                    )
                )
                # The role of earlier stacks (`ces`, password `ces`, owner of everything): hand its objects to
                # the owner and disable it.
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'ces'")
                legacy = cur.fetchone() is not None
        finally:
            conn.close()  # type: ignore[attr-defined]
        db = self._superuser_connect(stack, database)
        try:
            with db.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(PG_OWNER)))
                cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
                if legacy:
                    cur.execute(sql.SQL("REASSIGN OWNED BY ces TO {}").format(sql.Identifier(PG_OWNER)))
                    cur.execute("ALTER ROLE ces NOLOGIN PASSWORD NULL")
        finally:
            db.close()  # type: ignore[attr-defined]

    def answers(self) -> bool:
        if not self.endpoint.accepts_connections():
            return False
        import psycopg2

        settings = secrets.for_probe(self.settings)
        try:
            conn = psycopg2.connect(
                make_url(settings.database_dsn).set(drivername="postgresql").render_as_string(hide_password=False),
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


class _TempSecret:
    """A password in a 0600 file for initdb's --pwfile, readable by `owner`, removed afterwards."""

    def __init__(self, password: str, owner: str | None) -> None:
        self.password = password
        self.owner = owner
        self.path: Path | None = None

    def __enter__(self) -> Path:
        home = Path(pwd.getpwnam(self.owner).pw_dir) if self.owner else None
        fd, name = tempfile.mkstemp(prefix="ces-pw-", dir=str(home) if home else None)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        self.path = Path(name)
        if self.owner:
            shutil.chown(self.path, self.owner, self.owner)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
