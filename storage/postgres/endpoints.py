"""Endpoint health on PostgreSQL (storage/sqlite/endpoints.py, in PostgreSQL's SQL).

The count and the pause are one row's upsert and update in the attempt's transaction:
the row lock orders two processes counting outcomes of one endpoint, so a pause decided
on one node holds on every node.
"""

from __future__ import annotations

from asyncpg.pool import Pool, PoolConnectionProxy

from storage.endpoints import (
    EndpointHealth,
    EndpointOutcome,
    Requeue,
    forget_before,
    health_of,
    hour_of,
)
from storage.records import PostbackRow

_TYPES = {"max_attempts": "integer"}


def insert_postbacks() -> str:
    """New postbacks (one JSON array per row): to a paused endpoint stored paused, to one
    that asked to wait due no earlier. Scalar subqueries rather than a join, so the rows
    are inserted (and numbered) in the batch's order."""
    names = PostbackRow.__struct_fields__
    values = {name: f"(v->>{i})::{_TYPES.get(name, 'text')}" for i, name in enumerate(names)}
    endpoint = f"SELECT {{}} FROM endpoints AS e WHERE e.endpoint = {values['endpoint']}"
    values["status"] = (f"CASE WHEN ({endpoint.format('e.state')}) = 'paused' THEN 'paused'"
                        f" ELSE {values['status']} END")
    values["next_attempt_at"] = (f"greatest({values['next_attempt_at']},"
                                 f" ({endpoint.format('e.not_before')}))")
    return (f"INSERT INTO postbacks ({', '.join(names)})"
            f" SELECT {', '.join(values[name] for name in names)}"
            " FROM jsonb_array_elements($1::jsonb) AS v")


# $1 endpoint, $2 delivered, $3 at, $4 status code, $5 error, $6 not_before.
_COUNT = """
INSERT INTO endpoints AS p (endpoint, state, consecutive_failures, failing_since,
                            last_success_at, last_failure_at, last_status_code, last_error,
                            not_before)
VALUES ($1, 'active', CASE WHEN $2 THEN 0 ELSE 1 END, CASE WHEN $2 THEN NULL ELSE $3 END,
        CASE WHEN $2 THEN $3 END, CASE WHEN $2 THEN NULL ELSE $3 END, $4, $5, $6)
ON CONFLICT (endpoint) DO UPDATE SET
    consecutive_failures = CASE WHEN $2 THEN 0 ELSE p.consecutive_failures + 1 END,
    failing_since = CASE WHEN $2 THEN NULL ELSE coalesce(p.failing_since, $3) END,
    last_success_at = CASE WHEN $2 THEN $3 ELSE p.last_success_at END,
    last_failure_at = CASE WHEN $2 THEN p.last_failure_at ELSE $3 END,
    last_status_code = $4,
    last_error = coalesce($5, p.last_error),
    not_before = greatest(p.not_before, $6)
"""
_HOUR = """
INSERT INTO endpoint_hours AS h (endpoint, hour, attempts, delivered)
VALUES ($1, $2, 1, CASE WHEN $3 THEN 1 ELSE 0 END)
ON CONFLICT (endpoint, hour) DO UPDATE SET attempts = h.attempts + 1,
                                           delivered = h.delivered + excluded.delivered
"""
_FORGET_HOURS = "DELETE FROM endpoint_hours WHERE endpoint = $1 AND hour < $2"
# $1 endpoint, $2 at, $3 gone, $4 pause_after, $5 pause_since.
_PAUSE = """
UPDATE endpoints SET state = 'paused', paused_at = $2,
                     paused_reason = CASE WHEN $3 THEN 'gone' ELSE 'failures' END
WHERE endpoint = $1 AND state = 'active' AND $4 > 0 AND (
    $3 OR (consecutive_failures >= $4 AND failing_since <= $5))
RETURNING consecutive_failures
"""
_HOLD = "UPDATE postbacks SET status = 'paused' WHERE endpoint = $1 AND status = 'pending'"
_WAIT = ("UPDATE postbacks SET next_attempt_at = $2"
         " WHERE endpoint = $1 AND status = 'pending' AND next_attempt_at < $2")
# An upsert: a resume is recorded with who made it even before the endpoint's first attempt.
_RESUME = """
INSERT INTO endpoints (endpoint, state, consecutive_failures, resumed_by)
VALUES ($1, 'active', 0, $2)
ON CONFLICT (endpoint) DO UPDATE SET state = 'active', consecutive_failures = 0,
    failing_since = NULL, paused_at = NULL, paused_reason = NULL,
    resumed_by = excluded.resumed_by
"""
_REQUEUE_SET = """
UPDATE postbacks SET status = 'pending', next_attempt_at = $1, updated_at = $1,
                     requeued_by = $2,
                     max_attempts = greatest(max_attempts, attempts + 1)
"""
_REQUEUE_PAUSED = _REQUEUE_SET + " WHERE endpoint = $3 AND status = 'paused'"
_REQUEUE_FAILED = _REQUEUE_SET + """
WHERE status = 'failed' AND created_at >= $3 AND created_at < $4
  AND ($5::text IS NULL OR endpoint = $5)
"""


async def record(conn: PoolConnectionProxy, outcomes: list[EndpointOutcome]) -> list[str]:
    """Count each outcome against its endpoint; the endpoints this pauses."""
    paused = []
    for outcome in outcomes:
        await conn.execute(_COUNT, outcome.endpoint, outcome.delivered, outcome.at,
                           outcome.status_code, outcome.failure, outcome.not_before)
        await conn.execute(_HOUR, outcome.endpoint, hour_of(outcome.at), outcome.delivered)
        await conn.execute(_FORGET_HOURS, outcome.endpoint, forget_before(outcome.at))
        if outcome.not_before is not None:
            await conn.execute(_WAIT, outcome.endpoint, outcome.not_before)
        if await conn.fetchval(_PAUSE, outcome.endpoint, outcome.at, outcome.gone,
                               outcome.pause_after, outcome.pause_since) is not None:
            await conn.execute(_HOLD, outcome.endpoint)
            paused.append(outcome.endpoint)
    return paused


async def requeue(conn: PoolConnectionProxy, requeues: list[Requeue]) -> None:
    """Apply each re-queue, and note in it how many postbacks it made pending."""
    for order in requeues:
        if order.action == "resume":
            await conn.execute(_RESUME, order.endpoint, order.token)
            done = await conn.execute(_REQUEUE_PAUSED, order.now, order.token,
                                      order.endpoint)
        else:
            done = await conn.execute(_REQUEUE_FAILED, order.now, order.token,
                                      order.created_from, order.created_to, order.endpoint)
        order.counted[:] = [int(done.split()[-1])]  # "UPDATE n"


_HEALTH = """
SELECT endpoint, state, consecutive_failures, last_success_at, last_failure_at,
       last_status_code, last_error, paused_at, paused_reason, resumed_by FROM endpoints
"""
_BY_STATUS = ("SELECT endpoint, status, count(*) FROM postbacks"
              " WHERE endpoint = ANY($1::text[]) GROUP BY endpoint, status")
_DAY = ("SELECT endpoint, sum(attempts), sum(delivered) FROM endpoint_hours"
        " WHERE hour >= $1 GROUP BY endpoint")


async def health(pool: Pool, endpoints: list[str], since: str, *,
                 counts: bool = True) -> list[EndpointHealth]:
    """storage.sqlite.endpoints.health, on PostgreSQL."""
    stored = {row[0]: tuple(row) for row in await pool.fetch(_HEALTH)}
    keys = sorted(set(stored) | set(endpoints))
    by_status: dict[str, dict[str, int]] = {key: {} for key in keys}
    for endpoint, status, count in await pool.fetch(_BY_STATUS, keys) if counts else ():
        by_status[endpoint][status] = count
    day = {endpoint: (int(attempts), int(delivered)) for endpoint, attempts, delivered
           in await pool.fetch(_DAY, hour_of(since))}
    return [health_of(key, stored.get(key), by_status[key], day.get(key, (0, 0)))
            for key in keys]


