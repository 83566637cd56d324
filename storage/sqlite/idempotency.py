"""Stored answers of requests sent with an Idempotency-Key."""

from __future__ import annotations

import aiosqlite

from storage.records import AnswerRow

_FIND = (
    "SELECT key, fingerprint, status, content_type, headers, body, created_at, expires_at"
    " FROM idempotency_keys WHERE key = ? AND expires_at > ?"
)


async def stored_answer(conn: aiosqlite.Connection, key: str, now: str) -> AnswerRow | None:
    """The answer stored under ``key``, unless it has expired by ``now``."""
    rows = list(await conn.execute_fetchall(_FIND, (key, now)))
    if not rows:
        return None
    key, fingerprint, status, content_type, headers, body, created_at, expires_at = rows[0]
    return AnswerRow(key=key, fingerprint=fingerprint, status=status,
                     content_type=content_type, headers=headers, body=body,
                     created_at=created_at, expires_at=expires_at)
