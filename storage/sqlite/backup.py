"""Online backups: a consistent copy of the served file, taken inside the serving process.

The file is locked to its server (see ``storage.sqlite.connection``), so no outside program can
copy it; ``VACUUM INTO`` on a connection of its own writes a compact snapshot while the
writer goes on committing.

A copy can take as much room as the database, and a disk it fills stops the service's own
commits too: so one copy is written at a time, only when the disk has room for it, and a
copy that fails leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import errno
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import structlog

from storage.errors import BackupInProgress, NoRoomForBackup
from storage.sqlite.connection import connect_sync

log = structlog.get_logger("storage.backup")

# The free bytes of the filesystem that holds a directory.
FreeSpace = Callable[[Path], int]

# What SQLite may keep beside a file it writes; a copy cut short can leave them.
_BESIDE = ("-journal", "-wal", "-shm")


def backup_name(stem: str, moment: datetime) -> str:
    """A backup's file name: the database's stem and the UTC time to the microsecond, so
    names sort in the order the backups were taken."""
    return f"{stem}-{moment:%Y%m%dT%H%M%S%fZ}.db"


def _backup_names(stem: str) -> re.Pattern[str]:
    return re.compile(re.escape(stem) + r"-\d{8}T\d{12}Z\.db")


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def database_bytes(db: Path) -> int:
    """The file and its write-ahead log: the most a copy of the database can take."""
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def backup_into(db: Path, target: Path) -> int:
    """Write a consistent copy of ``db`` to ``target`` (which must not exist); its size.

    On failure the partial copy and any journal beside it are removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # Claiming the name first: a file already there is never ours to remove.
    target.touch(exist_ok=False)
    try:
        conn = connect_sync(db)
        try:
            conn.execute("VACUUM INTO ?", (str(target),))
        finally:
            conn.close()
        return target.stat().st_size
    except BaseException:
        for path in (target, *(target.with_name(target.name + end) for end in _BESIDE)):
            path.unlink(missing_ok=True)
        raise


def prune(directory: Path, stem: str, keep: int, newest: Path) -> list[Path]:
    """Remove all but the ``keep`` newest backups of ``stem`` in ``directory``; ``newest``
    (the one just written) always stays. Other files are never touched. What was removed."""
    names = _backup_names(stem)
    older = sorted(path for path in directory.iterdir()
                   if names.fullmatch(path.name) and path != newest)
    removed = older[:max(len(older) - (keep - 1), 0)]
    for path in removed:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            # The new backup is written; an old one that stays is no reason to fail it.
            log.warning("backup_not_removed", path=str(path), error=repr(exc))
    return removed


def _disk_full(exc: OSError | sqlite3.OperationalError) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    # The primary result code, whatever extended code SQLite gave with it.
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL


def _existing(directory: Path) -> Path:
    """``directory``, or its nearest parent that exists (on the same filesystem)."""
    while not directory.is_dir() and directory != directory.parent:
        directory = directory.parent
    return directory


class Backups:
    """Backups of one database file, one at a time.

    ``free_space`` reads the free bytes of a directory's filesystem; a test stages a full
    disk with it.
    """

    def __init__(self, db: Path, *, free_space: FreeSpace = free_bytes) -> None:
        self._db = db
        self._free_space = free_space
        # Released by the thread that writes the copy, not by the awaiting request: a
        # request cancelled mid-copy must not let a second copy start beside the first.
        self._running = threading.Lock()

    def target(self, moment: datetime) -> Path:
        """``backups/`` beside the database file, named by the UTC time."""
        db = self._db.absolute()
        return db.parent / "backups" / backup_name(db.stem, moment)

    async def take(self, target: Path, keep: int | None) -> int:
        """Write a backup to ``target``, then keep only the ``keep`` newest (None: all);
        its size. BackupInProgress while another is written, NoRoomForBackup when the
        disk lacks room for it."""
        if not self._running.acquire(blocking=False):
            raise BackupInProgress("Backup in progress")
        try:
            # Handed to the thread before any await, so the lock is always released.
            done = asyncio.get_running_loop().run_in_executor(
                None, self._take, target, keep)
        except BaseException:
            self._running.release()
            raise
        return await done

    def _take(self, target: Path, keep: int | None) -> int:
        try:
            # Twice the database: room for the copy, and as much again left for the
            # service's own commits once the copy is written.
            needed = 2 * database_bytes(self._db)
            free = self._free_space(_existing(target.parent))
            if free < needed:
                raise NoRoomForBackup(f"{free} bytes free, {needed} needed")
            try:
                size = backup_into(self._db, target)
            except (OSError, sqlite3.OperationalError) as exc:
                if not _disk_full(exc):
                    raise
                # Others filled the disk since it was measured: the same answer as before.
                raise NoRoomForBackup("the disk filled up during the copy") from exc
            if keep is not None:
                prune(target.parent, self._db.absolute().stem, keep, target)
            return size
        finally:
            self._running.release()
