"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` + ``pg_ctl`` in a temp dir.

The server listens on a free loopback port and asks TCP clients for a password (scram-sha-256),
so the collector's password handling is exercised for real. PostgreSQL refuses to run as root: when
the tests run as root (CI in a container), the cluster belongs to the ``postgres`` user the
distribution's package created, and its commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "collector"
PASSWORD = "pg-test-secret"  # a throwaway cluster on loopback


def find_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} is not installed; apt-get install postgresql (.ci/run does this)")
    return candidates[-1]


def _version_key(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One cluster; :meth:`start` creates it on first use, :meth:`stop` / :meth:`restart` for fault tests."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="collector-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._run_as: str | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no postgres user to run PostgreSQL as") from None
            self._run_as = "postgres"
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.root.chmod(0o700)
        self._initialised = False

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    @property
    def password(self) -> str:
        return PASSWORD

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, cwd="/", timeout=120)

    def _init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._run_as is not None:
            owner = pwd.getpwnam(self._run_as)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        self._run(
            find_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--no-sync",  # a throwaway cluster: durability across power loss is not what is tested
        )
        pwfile.unlink()
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.root}'",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "max_connections = 200",
            "shared_buffers = 64MB",
        ]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        self._initialised = True

    def start(self) -> None:
        if not self._initialised:
            self._init()
        result = self._run(
            find_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "start", check=False
        )
        if result.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()} {log[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        self._run(find_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def psql(self, sql: str) -> str:
        """Run SQL over the local socket (trust), for setting up and inspecting from outside the collector."""
        result = self._run(
            find_bin("psql"), "-h", str(self.root), "-p", str(self.port), "-U", USER, "-d", "postgres",
            "-At", "-v", "ON_ERROR_STOP=1", "-c", sql,
        )  # fmt: skip
        return result.stdout

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
