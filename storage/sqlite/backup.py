"""Online backups: a consistent copy of the served file, taken inside the serving process.

The file is locked to its server (see ``storage.sqlite.connection``), so no outside program can
copy it; ``VACUUM INTO`` on a connection of its own writes a compact snapshot while the
writer goes on committing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from storage.sqlite.connection import connect_sync


def backup_into(db: Path, target: Path) -> int:
    """Write a consistent copy of ``db`` to ``target`` (which must not exist); its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    conn = connect_sync(db)
    try:
        conn.execute("VACUUM INTO ?", (str(target),))
    except sqlite3.OperationalError:
        target.unlink(missing_ok=True)
        raise
    finally:
        conn.close()
    return target.stat().st_size
