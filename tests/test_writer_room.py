"""Whether the writer takes another op: below its bound and not closing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.sqlite.store import Store
from tests.test_writer import lead


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "r.db", max_pending=2, gather_seconds=60)
    await store.open()
    yield store
    await store.close()


async def test_room_until_the_bound_and_none_once_closing(store: Store) -> None:
    assert store.has_room()
    store.submit(lead("a"))
    assert store.has_room()
    store.submit(lead("b"))
    assert not store.has_room()
    await store.flush()
    assert store.has_room()
    await store.close()
    assert not store.writer.has_room()
