"""Endpoint health on SQLite: attempts counted in the writer's transaction, the pause
decided there, operators' re-queues, and the health read for the API."""

from __future__ import annotations

import sqlite3

import aiosqlite
import msgspec

from storage.endpoints import (
    EndpointHealth,
    EndpointOutcome,
    Requeue,
    forget_before,
    health_of,
    hour_of,
)
from storage.records import PostbackRow


def insert_postbacks() -> str:
    """The bulk insert of new postbacks (one JSON array per row): one to a paused endpoint
    is stored paused, one to an endpoint that asked to wait is due no earlier. Scalar
    subqueries rather than a join, so the rows are inserted (and numbered) in order."""
    names = PostbackRow.__struct_fields__
    values = {name: f"json_extract(value, '$[{i}]')" for i, name in enumerate(names)}
    endpoint = f"SELECT {{}} FROM endpoints AS e WHERE e.endpoint = {values['endpoint']}"
    values["status"] = (f"CASE WHEN ({endpoint.format('e.state')}) = 'paused' THEN 'paused'"
                        f" ELSE {values['status']} END")
    values["next_attempt_at"] = (f"max({values['next_attempt_at']},"
                                 f" coalesce(({endpoint.format('e.not_before')}), ''))")
    return (f"INSERT INTO postbacks ({', '.join(names)})"
            f" SELECT {', '.join(values[name] for name in names)} FROM json_each(?)")


# ?1 endpoint, ?2 delivered (0/1), ?3 at, ?4 status code, ?5 error, ?6 not_before.
_COUNT = """
INSERT INTO endpoints (endpoint, state, consecutive_failures, failing_since, last_success_at,
                       last_failure_at, last_status_code, last_error, not_before)
VALUES (?1, 'active', 1 - ?2, CASE WHEN ?2 THEN NULL ELSE ?3 END, CASE WHEN ?2 THEN ?3 END,
        CASE WHEN ?2 THEN NULL ELSE ?3 END, ?4, ?5, ?6)
ON CONFLICT (endpoint) DO UPDATE SET
    consecutive_failures = CASE WHEN ?2 THEN 0 ELSE consecutive_failures + 1 END,
    failing_since = CASE WHEN ?2 THEN NULL ELSE coalesce(failing_since, ?3) END,
    last_success_at = CASE WHEN ?2 THEN ?3 ELSE last_success_at END,
    last_failure_at = CASE WHEN ?2 THEN last_failure_at ELSE ?3 END,
    last_status_code = ?4,
    last_error = coalesce(?5, last_error),
    not_before = CASE WHEN ?6 IS NULL THEN not_before ELSE max(coalesce(not_before, ''), ?6) END
"""
_HOUR = """
INSERT INTO endpoint_hours (endpoint, hour, attempts, delivered) VALUES (?1, ?2, 1, ?3)
ON CONFLICT (endpoint, hour) DO UPDATE SET attempts = attempts + 1,
                                           delivered = delivered + excluded.delivered
"""
# Buckets older than two days are of no use to the day's success rate.
_FORGET_HOURS = "DELETE FROM endpoint_hours WHERE endpoint = ?1 AND hour < ?2"
# ?1 endpoint, ?2 at, ?3 gone, ?4 pause_after, ?5 pause_since.
_PAUSE = """
UPDATE endpoints SET state = 'paused', paused_at = ?2,
                     paused_reason = CASE WHEN ?3 THEN 'gone' ELSE 'failures' END
WHERE endpoint = ?1 AND state = 'active' AND ?4 > 0 AND (
    ?3 OR (consecutive_failures >= ?4 AND failing_since <= ?5))
RETURNING consecutive_failures
"""
_HOLD = "UPDATE postbacks SET status = 'paused' WHERE endpoint = ?1 AND status = 'pending'"
_WAIT = ("UPDATE postbacks SET next_attempt_at = ?2"
         " WHERE endpoint = ?1 AND status = 'pending' AND next_attempt_at < ?2")
# An upsert: a resume is recorded with who made it even before the endpoint's first attempt.
_RESUME = """
INSERT INTO endpoints (endpoint, state, consecutive_failures, resumed_by)
VALUES (?1, 'active', 0, ?2)
ON CONFLICT (endpoint) DO UPDATE SET state = 'active', consecutive_failures = 0,
    failing_since = NULL, paused_at = NULL, paused_reason = NULL,
    resumed_by = excluded.resumed_by
"""
# A re-queued postback is due now with at least one attempt left.
_REQUEUE_SET = """
UPDATE postbacks SET status = 'pending', next_attempt_at = ?1, updated_at = ?1,
                     requeued_by = ?2,
                     max_attempts = max(max_attempts, attempts + 1)
"""
_REQUEUE_PAUSED = _REQUEUE_SET + " WHERE endpoint = ?3 AND status = 'paused'"
_REQUEUE_FAILED = _REQUEUE_SET + """
WHERE status = 'failed' AND created_at >= ?3 AND created_at < ?4
  AND (?5 IS NULL OR endpoint = ?5)
"""


def record(conn: sqlite3.Connection, outcomes: list[EndpointOutcome]) -> list[str]:
    """Count each outcome against its endpoint; the endpoints this pauses."""
    paused = []
    for outcome in outcomes:
        conn.execute(_COUNT, (outcome.endpoint, outcome.delivered, outcome.at,
                              outcome.status_code, outcome.failure, outcome.not_before))
        conn.execute(_HOUR, (outcome.endpoint, hour_of(outcome.at), outcome.delivered))
        conn.execute(_FORGET_HOURS, (outcome.endpoint, forget_before(outcome.at)))
        if outcome.not_before is not None:
            conn.execute(_WAIT, (outcome.endpoint, outcome.not_before))
        rows = conn.execute(_PAUSE, (
            outcome.endpoint, outcome.at, outcome.gone, outcome.pause_after,
            outcome.pause_since)).fetchall()
        if rows:
            conn.execute(_HOLD, (outcome.endpoint,))
            paused.append(outcome.endpoint)
    return paused


def requeue(conn: sqlite3.Connection, requeues: list[Requeue]) -> None:
    """Apply each re-queue, and note in it how many postbacks it made pending."""
    for order in requeues:
        if order.action == "resume":
            conn.execute(_RESUME, (order.endpoint, order.token))
            cursor = conn.execute(_REQUEUE_PAUSED, (order.now, order.token, order.endpoint))
        else:
            cursor = conn.execute(_REQUEUE_FAILED, (
                order.now, order.token, order.created_from, order.created_to,
                order.endpoint))
        order.counted[:] = [cursor.rowcount]


_HEALTH = """
SELECT endpoint, state, consecutive_failures, last_success_at, last_failure_at,
       last_status_code, last_error, paused_at, paused_reason, resumed_by FROM endpoints
"""
_BY_STATUS = ("SELECT endpoint, status, count(*) FROM postbacks"
              " WHERE endpoint IN (SELECT value FROM json_each(?1)) GROUP BY endpoint, status")
_DAY = ("SELECT endpoint, sum(attempts), sum(delivered) FROM endpoint_hours"
        " WHERE hour >= ?1 GROUP BY endpoint")


async def health(conn: aiosqlite.Connection, endpoints: list[str], since: str, *,
                 counts: bool = True) -> list[EndpointHealth]:
    """Every endpoint with a row or among ``endpoints`` (those configured), with its
    attempts since the hour ``since`` and, with ``counts``, its postbacks by status (an
    index scan over all of them: the metrics and name lookups go without)."""
    stored = {row[0]: row for row in await conn.execute_fetchall(_HEALTH)}
    keys = sorted(set(stored) | set(endpoints))
    by_status: dict[str, dict[str, int]] = {key: {} for key in keys}
    for endpoint, status, count in await conn.execute_fetchall(
            _BY_STATUS, (msgspec.json.encode(keys).decode(),)) if counts else ():
        by_status[endpoint][status] = count
    day = {endpoint: (attempts, delivered) for endpoint, attempts, delivered
           in await conn.execute_fetchall(_DAY, (hour_of(since),))}
    return [health_of(key, stored.get(key), by_status[key], day.get(key, (0, 0)))
            for key in keys]

