"""POST /api/admin/backup cannot fill the disk: one at a time, only with room, nothing left
of a failed copy, and only the newest ``[server] backup_keep`` kept."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.config.reload import ConfigFile
from app.factory import create_app
from storage.sqlite.store import Store
from tests.conftest import (
    ADMIN_TOKEN,
    TEST_CONFIG,
    FakeClock,
    error,
    make_config,
    running,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROOT = Path(__file__).resolve().parents[1]
PLENTY = 1 << 50


async def backup(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/api/admin/backup", headers=AUTH)


def files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


class HeldDisk:
    """A free-space reading that keeps the backup asking it waiting until released: a
    backup still being written, without any timing."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.released = threading.Event()

    def __call__(self, directory: Path) -> int:
        self.asked.set()
        self.released.wait(timeout=60)
        return PLENTY


async def test_backups_requested_together_write_one_copy_and_the_rest_answer_409(
        db_path: Path) -> None:
    disk = HeldDisk()
    config = make_config(db_path)
    async with running(config, store=Store(db_path, free_space=disk)) as api:
        await api.click()
        first = asyncio.create_task(backup(api.client))
        assert await asyncio.to_thread(disk.asked.wait, 60)
        others = await asyncio.gather(*(backup(api.client) for _ in range(9)))
        disk.released.set()
        taken = await first
        assert [(other.status_code, other.json()) for other in others] == [
            (409, error(409, "Backup in progress"))] * 9
        assert taken.status_code == 201, taken.text
        written = Path(taken.json()["data"]["path"])
        assert files(db_path.parent / "backups") == [written.name]
        # Once it is written, the next one runs.
        api.clock.advance(1)
        assert (await backup(api.client)).status_code == 201


class ShortDisk:
    """Free space ``short_by`` bytes under twice the database (its file and its WAL),
    measured as the backup asks."""

    def __init__(self, db: Path, short_by: int) -> None:
        self.db = db
        self.short_by = short_by
        self.wal_bytes: list[int] = []

    def __call__(self, directory: Path) -> int:
        wal = self.db.with_name(self.db.name + "-wal")
        self.wal_bytes.append(wal.stat().st_size)
        return 2 * (self.db.stat().st_size + wal.stat().st_size) - self.short_by


async def test_a_disk_without_room_for_twice_the_database_answers_507_and_writes_nothing(
        db_path: Path) -> None:
    short = ShortDisk(db_path, short_by=1)
    async with running(make_config(db_path), store=Store(db_path, free_space=short)) as api:
        for _ in range(20):
            await api.click()
        response = await backup(api.client)
        assert (response.status_code, response.json()) == (
            507, error(507, "Insufficient storage"))
        # The WAL counts: it holds committed pages a copy must take along.
        assert short.wal_bytes[0] > 0
        assert files(db_path.parent / "backups") == []
        # Exactly twice is room enough; the service serves on in both cases.
        short.short_by = 0
        response = await backup(api.client)
        assert response.status_code == 201, response.text
        await api.click()


_CUT_SHORT = """
import asyncio, json, resource, signal, sys
from pathlib import Path
from storage.sqlite.backup import Backups

db, first, second = map(Path, sys.argv[1:])
backups = Backups(db)
# Writes past the limit fail with EFBIG, as on a full disk, instead of killing the process.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (db.stat().st_size // 4, hard))
try:
    asyncio.run(backups.take(first, None))
    error = None
except Exception as exc:
    error = type(exc).__name__
left = sorted(path.name for path in first.parent.iterdir())
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
size = asyncio.run(backups.take(second, None))
print(json.dumps({"error": error, "left": left, "second": size}))
"""


def test_a_copy_cut_short_by_an_io_error_leaves_nothing_and_the_next_one_runs(
        tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE filler (blob BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?)",
                         [(os.urandom(1000),) for _ in range(2000)])
        conn.commit()
    out = tmp_path / "backups"
    first, second = out / "events-20261128T120000000000Z.db", out / "events-second.db"
    # A process of its own: the file size limit applies to the whole process.
    ran = subprocess.run([sys.executable, "-c", _CUT_SHORT, str(db), str(first), str(second)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(ran.stdout)
    assert result["error"] == "OperationalError"
    assert result["left"] == []
    # The failed copy let the next one run.
    assert result["second"] == second.stat().st_size > db.stat().st_size // 4
    assert files(out) == [second.name]


_FULL_DISK = """
import asyncio, json, os, sys
from pathlib import Path
from storage.errors import NoRoomForBackup
from storage.sqlite.backup import Backups

db, out = Path(sys.argv[1]), Path(sys.argv[2])
# The reading says there is room: others fill the disk between the check and the copy.
backups = Backups(db, free_space=lambda directory: 1 << 50)
filler = out / "filler"
stat = os.statvfs(out)
filler.write_bytes(bytes(stat.f_bavail * stat.f_frsize - 65536))
try:
    asyncio.run(backups.take(out / "events-20261128T120000000000Z.db", None))
    error = None
except NoRoomForBackup:
    error = "NoRoomForBackup"
left = sorted(path.name for path in out.iterdir())
filler.unlink()
size = asyncio.run(backups.take(out / "events-20261128T120001000000Z.db", None))
print(json.dumps({"error": error, "left": left, "second": size}))
"""
# A filesystem of 4 MiB of its own, in a mount namespace of its own: no privilege needed
# where the kernel allows user namespaces, and nothing outside the process sees it.
_ON_SMALL_DISK = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                  'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$0" -c "$2" "$3" "$1"']


def test_a_disk_that_fills_during_the_copy_leaves_no_journal_and_answers_no_room(
        tmp_path: Path) -> None:
    if subprocess.run([*_ON_SMALL_DISK[:4], "true"], capture_output=True).returncode:
        pytest.skip("unshare cannot make a user and mount namespace here: it comes with"
                    " apt-get install util-linux, and the kernel must allow user namespaces")
    db = tmp_path / "events.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE filler (blob BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?)",
                         [(os.urandom(1000),) for _ in range(2000)])
        conn.commit()
    out = tmp_path / "backups"
    out.mkdir()
    ran = subprocess.run([*_ON_SMALL_DISK, sys.executable, str(out), _FULL_DISK, str(db)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    # SQLite left a journal beside the partial copy on the full disk; both are gone.
    assert result == {"error": "NoRoomForBackup", "left": ["filler"],
                      "second": result["second"]}
    assert result["second"] > 0


async def test_backup_keep_leaves_the_newest_and_no_file_of_another_name_is_touched(
        db_path: Path) -> None:
    out = db_path.parent / "backups"
    out.mkdir()
    strangers = ["notes.txt", "other-20261128T110000000000Z.db",
                 "events-20261128T110000000000Z.db-journal", "events-latest.db",
                 "events-20261128T11000000000Z.db"]
    for name in [*strangers, "events-20261127T110000000000Z.db"]:
        (out / name).write_text("not a backup of this service's")
    async with running(make_config(db_path, backup_keep=2)) as api:
        taken = []
        for _ in range(4):
            api.clock.advance(1)
            response = await backup(api.client)
            assert response.status_code == 201, response.text
            taken.append(Path(response.json()["data"]["path"]).name)
    assert files(out) == sorted([*strangers, *taken[-2:]])


@asynccontextmanager
async def serving_on(config: Path, db: str,
                     clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """The app as ``serve --config FILE --db DB`` starts it."""
    config_file = ConfigFile(config, {"db": db})
    app = create_app(config_file.read(), config_file=config_file, clock=clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def keeping(count: int) -> str:
    return TEST_CONFIG.replace("[server]\n", f"[server]\nbackup_keep = {count}\n", 1)


async def test_a_reload_changes_backup_keep_and_postgresql_still_answers_501(
        tmp_path: Path, db: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(TEST_CONFIG)
    clock = FakeClock()
    out = tmp_path / "backups"
    async with serving_on(config, db, clock) as client:
        answers = []
        for _ in range(3):
            clock.advance(1)
            answers.append(await backup(client))
        config.write_text(keeping(1))
        reloaded = await client.post("/api/admin/reload", headers=AUTH)
        assert reloaded.status_code == 200, reloaded.text
        clock.advance(1)
        last = await backup(client)
    if db.startswith("postgresql"):
        pg_dump = error(501, "Backups of a PostgreSQL database are taken with pg_dump")
        assert [(answer.status_code, answer.json()) for answer in [*answers, last]] == [
            (501, pg_dump)] * 4
        assert files(out) == []
        return
    assert [answer.status_code for answer in answers] == [201] * 3
    assert last.status_code == 201, last.text
    assert files(out) == [Path(last.json()["data"]["path"]).name]


async def test_the_document_lists_the_backup_refusals(db_path: Path) -> None:
    async with running(make_config(db_path)) as api:
        spec = (await api.client.get("/openapi.json")).json()
    answers = spec["paths"]["/api/admin/backup"]["post"]["responses"]
    assert {"201", "401", "404", "409", "501", "507"} <= set(answers)
