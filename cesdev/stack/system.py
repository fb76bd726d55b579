"""Finding and installing the system programs the stack runs (Debian packages, the JVM, Maven)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path


class StackError(RuntimeError):
    """A stack step failed; the message says what to do about it."""


_apt_updated = False


def run(argv: list[str], *, what: str) -> str:
    """Run a setup command; on failure raise a StackError carrying its output instead of a traceback."""
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-3000:]
        raise StackError(f"{what} failed (exit {result.returncode}):\n{output}")
    return result.stdout


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_packages(packages: list[str], *, why: str) -> None:
    """Install Debian packages when running as root; otherwise say exactly what to install."""
    global _apt_updated
    if not packages:
        return
    if not is_root():
        raise StackError(f"{why} is missing. Install it with:\n  sudo apt-get install -y {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(packages)} ({why}) from Debian packages ...", flush=True)
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        _apt_updated = True
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def postgres_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server binaries, if any are installed."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(candidates[-1]).parent if candidates else None


def ensure_postgres() -> Path:
    if postgres_bin_dir() is None:
        ensure_packages(["postgresql"], why="PostgreSQL server")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise StackError("PostgreSQL was installed but no initdb was found under /usr/lib/postgresql")
    return bin_dir


def ensure_command(command: str, package: str, *, why: str) -> str:
    """The path of `command`, installing its Debian `package` first if it is not on PATH."""
    if shutil.which(command) is None:
        ensure_packages([package], why=why)
    path = shutil.which(command)
    if path is None:
        raise StackError(f"{command} not found on PATH after installing {package}")
    return path


def ensure_redis() -> str:
    return ensure_command("redis-server", "redis-server", why="Redis server")


def ensure_java() -> str:
    return ensure_command("java", "openjdk-17-jre-headless", why="a Java runtime for Kafka")


def ensure_maven() -> str:
    return ensure_command("mvn", "maven", why="Maven (to resolve Kafka from Maven Central)")
