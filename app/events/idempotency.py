"""Idempotency-Key: a retried request gets the answer its first attempt got, byte for byte.

A key is claimed in memory before anything is awaited, so of many requests carrying one
key exactly one is handled; the others get 409 until its answer is known. Where processes
share a database, the key is also reserved there (the store's ``claim_answer``), so that
holds across them. The answer is
stored with the event it fired (one write op, one SQLite transaction), or on its own for a
refusal, and stays in memory only until that write commits; later requests read it from
the database, so it survives a restart and a ``kill -9`` once committed.

A request that fails after its event's write was queued (503 past the write timeout) leaves
that write, and the answer riding in it, to land later. Its key stays taken until the
write settles: committed, the database answers; refused for good, the key is free. Were
it freed at the 503, a retry would find the event fired and answer 400 Duplicate.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actors.clock import Clock, utc_text
from app.edge import errors
from app.edge.request_info import header
from storage.backend import EventStore
from storage.errors import StoreBusy, StoreClosed
from storage.records import RESERVED, AnswerRow, WriteOp

HEADER = b"idempotency-key"
REPLAYED = "Idempotent-Replayed"
_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_canonical = msgspec.json.Encoder(order="deterministic")
# How long a reservation in a shared database outlives a process that died holding it; a
# request holds its key for far less (its body is read before, its writes wait at most
# write_timeout_seconds). After a 503 this process keeps the key until the write settles,
# which a failing store may make longer: past this, another process may take the key.
_RESERVED_FOR = timedelta(seconds=60)
_headers = msgspec.json.Decoder(dict[str, str])


class Answer(msgspec.Struct, frozen=True):
    """An answer as sent: what a replay sends again."""

    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes

    def response(self, *, replayed: bool = False) -> Response:
        headers = self.headers | {REPLAYED: "true"} if replayed else self.headers
        return Response(self.body, status_code=self.status, headers=headers or None,
                        media_type=self.content_type)


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key; 400 when it is not 1-255 printable ASCII characters."""
    key = header(request, HEADER)
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise errors.invalid_idempotency_key()
    return key


def fingerprint(route: str, fields: Any) -> str:
    """A hash of the route and the parsed fields: the same request, however it was spelled."""
    return hashlib.sha256(_canonical.encode([route, fields])).hexdigest()


@dataclass(slots=True)
class _Claim:
    fingerprint: str
    answer: Answer | None = None
    committed: bool = False


class IdempotencyKeys:
    def __init__(self, store: EventStore, clock: Clock, *, hours: float) -> None:
        self._store = store
        self._clock = clock
        self._keep = timedelta(hours=hours)
        self._claims: dict[str, _Claim] = {}
        store.on_commit(self._committed)

    def __len__(self) -> int:
        return len(self._claims)

    async def claim(self, key: str, fingerprint: str) -> Answer | None:
        """None when this request is the one to handle ``key``; else the answer to replay.

        Raises 422 when the key was used with other fields, 409 while its first request
        is still being handled.
        """
        claim = self._claims.get(key)
        if claim is not None:
            if claim.fingerprint != fingerprint:
                raise errors.idempotency_key_reused()
            if claim.answer is None:
                raise errors.idempotency_key_in_progress()
            return claim.answer
        # Claimed before the lookup is awaited: a concurrent request sees it.
        self._claims[key] = _Claim(fingerprint)
        now = self._clock.now()
        try:
            stored = await self._store.claim_answer(key, fingerprint, utc_text(now),
                                                    utc_text(now + _RESERVED_FOR))
        except BaseException:
            del self._claims[key]
            raise
        if stored is None:
            return None
        del self._claims[key]
        if stored.fingerprint != fingerprint:
            raise errors.idempotency_key_reused()
        if stored.status == RESERVED:  # another process is handling it
            raise errors.idempotency_key_in_progress()
        return Answer(status=stored.status, content_type=stored.content_type,
                      headers=_headers.decode(stored.headers),
                      body=base64.b64decode(stored.body))

    def row(self, key: str, fingerprint: str, answer: Answer) -> AnswerRow:
        """The row that stores ``answer`` under ``key``, for the write op it rides in."""
        now = self._clock.now()
        return AnswerRow(key=key, fingerprint=fingerprint, status=answer.status,
                         content_type=answer.content_type,
                         headers=_canonical.encode(answer.headers).decode(),
                         body=base64.b64encode(answer.body).decode(),
                         created_at=utc_text(now), expires_at=utc_text(now + self._keep))

    def answered(self, key: str, answer: Answer) -> None:
        """``answer`` went out and its row is queued: replay it until the row commits."""
        claim = self._claims.get(key)
        if claim is None:
            return
        if claim.committed:
            del self._claims[key]
        else:
            claim.answer = answer

    def store(self, key: str, fingerprint: str, answer: Answer) -> None:
        """Store a refusal's answer on its own (no event rides with it)."""
        try:
            self._store.submit(WriteOp(answer=self.row(key, fingerprint, answer)))
        except (StoreBusy, StoreClosed):
            self.release(key)  # the refusal is still answered, just not remembered
            return
        self.answered(key, answer)

    def release(self, key: str) -> None:
        """Forget a claim whose request stored nothing: the next request is handled anew."""
        claim = self._claims.get(key)
        if claim is not None and claim.answer is None:
            del self._claims[key]
            self._store.release_answer(key)

    def unsettled(self, key: str) -> None:
        """The request failed after its answer's write was queued: hold ``key`` until that
        write has committed (the database answers) or been refused for good (free again).

        Meanwhile a retry gets 409, as for any key in progress.
        """
        claim = self._claims.get(key)
        if claim is None or claim.answer is not None:
            return
        try:
            settled = self._store.settled()
        except StoreClosed:
            self.release(key)
            return
        settled.add_done_callback(lambda done: self._settled(key, claim, done))

    def _settled(self, key: str, claim: _Claim, done: asyncio.Future[None]) -> None:
        if not done.cancelled():
            done.exception()  # StoreClosed: the write was abandoned, and logged in full
        if self._claims.get(key) is not claim:
            return
        del self._claims[key]
        # Committed: the database answers from now on. Refused: nothing is stored under
        # the key, so it is free again.
        if not claim.committed:
            self._store.release_answer(key)

    def _committed(self, ops: list[WriteOp]) -> None:
        for op in ops:
            if op.answer is None:
                continue
            claim = self._claims.get(op.answer.key)
            if claim is None:
                continue
            if claim.answer is not None:
                del self._claims[op.answer.key]  # the database answers from now on
            else:
                claim.committed = True
