"""The suite's throwaway PostgreSQL: each test gets an empty database of its own."""

from __future__ import annotations

import asyncpg
import pytest

from tests.conftest import no_postgres
from tests.pg_cluster import ClusterUnavailable, binaries

TABLES = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"


async def test_a_test_database_is_empty_and_writable(pg_empty_url: str) -> None:
    conn = await asyncpg.connect(pg_empty_url)
    try:
        assert await conn.fetchval(TABLES) == 0
        await conn.execute("CREATE TABLE left_behind (x int)")
        assert await conn.fetchval(TABLES) == 1
    finally:
        await conn.close()


async def test_the_next_test_does_not_see_what_the_last_one_left(pg_empty_url: str) -> None:
    conn = await asyncpg.connect(pg_empty_url)
    try:
        assert await conn.fetchval(TABLES) == 0
        assert await conn.fetchval("SELECT current_database()") == pg_empty_url.rpartition("/")[2]
    finally:
        await conn.close()


def test_binaries_are_found_where_debian_puts_them() -> None:
    try:
        found = binaries()
    except Exception as exc:
        pytest.skip(f"{exc} (`make postgres` installs Debian's postgresql)")
    assert (found / "initdb").exists()
    assert (found / "pg_ctl").exists()


def test_without_postgresql_a_test_skips_naming_make_postgres() -> None:
    with pytest.raises(pytest.skip.Exception, match="make postgres"):
        no_postgres(ClusterUnavailable("no initdb"), {})


def test_under_ci_a_missing_postgresql_fails_instead_of_skipping() -> None:
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        no_postgres(ClusterUnavailable("no initdb"), {"CI": "true"})
