"""A throwaway PostgreSQL cluster: initdb and pg_ctl in a temp dir, on a free local port.

Debian's ``postgresql`` package provides the binaries (``make postgres`` and ``.ci/run``
install it). PostgreSQL refuses to run as root, so under root the cluster belongs to the
``postgres`` user the package creates, and its commands run through ``runuser``.

``python -m tests.pg_cluster`` starts one for trying the service by hand and prints its URL
and the command that stops it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# Settings that make a test cluster fast; nothing it holds needs to survive a power cut.
FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


class ClusterUnavailable(Exception):
    """No PostgreSQL binaries, or no user to run them as; the message says how to fix it."""


def binaries() -> Path:
    """The directory holding initdb and pg_ctl, the newest Debian version first."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda path: int(Path(path).parts[-3]), reverse=True)
    if versions:
        return Path(versions[0]).parent
    raise ClusterUnavailable(
        "no initdb/pg_ctl found: `make postgres` installs Debian's postgresql")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """One cluster in its own directory; ``stop`` removes it."""

    def __init__(self, fast: bool = True, base: str | None = None) -> None:
        self.bin = binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="ep-pg-", dir=base))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise ClusterUnavailable(
                    "running as root and no postgres user: `make postgres` installs "
                    "Debian's postgresql, which creates it") from None
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._fast = fast

    def start(self) -> str:
        """Create and start the cluster; returns its URL."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        options = ["-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                   "-c", f"unix_socket_directories={self.dir}", "-c", "max_connections=200",
                   *(FAST if self._fast else ())]
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.dir / "server.log"), "-w", "-t", "30",
                  "-o", " ".join(options), "start")
        return self.url

    def stop_command(self) -> str:
        return " ".join([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data),
                         "-m", "immediate", "stop"]) + f" && rm -rf {self.dir}"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, *command: str, check: bool = True) -> None:
        done = subprocess.run([*self._as, *command], capture_output=True, text=True,
                              cwd=self.dir)
        if check and done.returncode != 0:
            log = self.dir / "server.log"
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}"
                               + (log.read_text() if log.exists() else ""))


def main() -> int:
    try:
        cluster = Cluster(fast=False)
    except ClusterUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    print(cluster.start(), flush=True)
    print(f"stop it with: {cluster.stop_command()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
