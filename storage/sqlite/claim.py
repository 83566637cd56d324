"""One server per database file: a lock the operating system drops when its holder dies.

The lock is ``flock`` on ``<db>.lock``, which also records the holder's pid for the
refusal message; a ``kill -9`` can never leave it stale. SQLite's own exclusive lock
(see ``storage.sqlite.connection``) backs it up against any other program.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DatabaseInUse(Exception):
    """Another live process serves this database file."""

    def __init__(self, db: Path, pid: str) -> None:
        super().__init__(f"{db}: already served by another event-postback process (pid {pid})")


class Claim:
    """The held lock; ``release`` (or the process ending) lets the next server in."""

    def __init__(self, db: str | Path) -> None:
        self.path = Path(f"{db}.lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DatabaseInUse(Path(db), holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
