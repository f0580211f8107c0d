"""The Postgres side of user state: the ``user_state`` read model and ``user_events``.

Serving reads users through :class:`PgUserStates` (``get``, ``get_many``,
``consumed``) — one indexed lookup, no Kafka. The ``users`` worker writes a batch with
:meth:`PgUserStates.write`, in one transaction:

1. insert the accepted events into ``user_events`` (``ON CONFLICT DO NOTHING`` on
   ``event_id``): a conflict is a redelivery of an event already stored, and effects
   derived from it are skipped;
2. merge the co-visits of the newly inserted events (:class:`PgCovisitation`);
3. upsert each user's row, only where the stored ``version`` is lower — a stale or
   redelivered batch never moves a row backwards.

Errors are mapped by :func:`recsys.db.db_error`: connection trouble, deadlocks and
serialization failures become :class:`DatabaseUnavailable` (the worker retries the
batch); values Postgres refuses become :class:`DataRejected` (the worker isolates and
dead-letters the event that carries them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.cf.covisit import Pair
from recsys.cf.pg_covisit import COVISIT_MERGE, PgCovisitation
from recsys.users.state import VISIT_EVENTS, Accepted, UserState, event_weight, is_positive

__all__ = ["PgUserStates", "WriteResult"]

#: The whole batch in one statement (one round trip): the events, the co-visits of those
#: the insert actually added (a conflicting insert is a redelivery: its effects are
#: skipped), summed per pair in log2 space and merged in key order (no deadlocks between
#: workers), and the states that move forward. The rows travel as JSON documents: one
#: parameter per table, encoded by the C json encoder instead of a Python loop per value.
_WRITE_BATCH = f"""
WITH ev AS (
    SELECT * FROM json_to_recordset(%(events)s::json) AS r(
        event_id text, user_id text, item_id text, event_type text, rating float8,
        query text, session_id text, rec_request_id text, occurred_at timestamptz,
        positive bool, weight real, kafka_partition int, kafka_offset bigint,
        kafka_topic_id text)
), ins AS (
    INSERT INTO user_events (event_id, user_id, item_id, event_type, rating, query,
                             session_id, rec_request_id, occurred_at, positive, weight,
                             kafka_partition, kafka_offset, kafka_topic_id)
    SELECT * FROM ev
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
), contrib AS (
    SELECT p ->> 1 AS item_id, p ->> 2 AS other_id, (p ->> 3)::float8 AS w
    FROM json_array_elements(%(pairs)s::json) AS p
    WHERE (p ->> 0) IN (SELECT event_id FROM ins)
), peaked AS (
    SELECT item_id, other_id, w, max(w) OVER (PARTITION BY item_id, other_id) AS m
    FROM contrib
), summed AS (
    SELECT item_id, other_id,
           m + ln(sum(CASE WHEN w - m < -60 THEN 0 ELSE power(2.0::float8, w - m) END))
               / ln(2.0::float8) AS log2_weight
    FROM peaked
    GROUP BY item_id, other_id, m
), cv AS (
    INSERT INTO covisit (item_id, other_id, log2_weight)
    SELECT item_id, other_id, log2_weight FROM summed ORDER BY item_id, other_id
    {COVISIT_MERGE}
    RETURNING 1
), st AS (
    INSERT INTO user_state (user_id, version, warmth, positives, engagement, engagement_at,
                            session_id, last_event_at, state, updated_at)
    SELECT u.user_id, u.version, u.warmth, u.positives, u.engagement, u.engagement_at,
           u.session_id, u.last_event_at, u.state::jsonb, now()
    FROM json_to_recordset(%(states)s::json) AS u(
        user_id text, version bigint, warmth text, positives int, engagement float8,
        engagement_at timestamptz, session_id text, last_event_at timestamptz, state text)
    ON CONFLICT (user_id) DO UPDATE SET
        version = EXCLUDED.version, warmth = EXCLUDED.warmth,
        positives = EXCLUDED.positives, engagement = EXCLUDED.engagement,
        engagement_at = EXCLUDED.engagement_at, session_id = EXCLUDED.session_id,
        last_event_at = EXCLUDED.last_event_at, state = EXCLUDED.state, updated_at = now()
    WHERE user_state.version < EXCLUDED.version
    RETURNING 1
)
SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM ins), (SELECT count(*) FROM cv),
       (SELECT count(*) FROM st)
"""

#: How long a write waits for a pooled connection before the batch is retried.
_ACQUIRE_TIMEOUT_S = 30.0

_CONSUMED_TYPES = sorted(t.value for t in VISIT_EVENTS)


#: Worker-only fields (the dedup window and Kafka position); defaults when read back.
@dataclass(frozen=True)
class WriteResult:
    """What one batch write did."""

    inserted: int
    redelivered: int
    pairs: int
    states: int


class PgUserStates:
    """The user read model and event store in Postgres."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return db.connection(self.pool, "user states", _ACQUIRE_TIMEOUT_S)

    # ---- reads (serving) ------------------------------------------------------------
    async def get(self, user_id: str) -> UserState | None:
        """The user's state as last written by the worker, or None for an unknown user."""
        found = await self.get_many([user_id])
        return found.get(user_id)

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, UserState]:
        """States of the known users among ``user_ids``."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT user_id, state::text FROM user_state WHERE user_id = ANY(%s)", (ids,)
            )
            rows = await cur.fetchall()
        return {r[0]: UserState.model_validate_json(r[1]) for r in rows}

    async def consumed(self, user_id: str, limit: int = 1000) -> set[str]:
        """Items the user visited (any event but SEARCH and DISMISS), newest ``limit``."""
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT item_id FROM user_events WHERE user_id = %s AND item_id IS NOT NULL "
                "AND event_type = ANY(%s) ORDER BY occurred_at DESC LIMIT %s",
                (user_id, _CONSUMED_TYPES, limit),
            )
            return {r[0] for r in await cur.fetchall()}

    async def state_and_consumed(
        self, user_id: str, limit: int = 1000
    ) -> tuple[UserState | None, set[str]]:
        """:meth:`get` and :meth:`consumed` in one round trip (the serving path's read)."""
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT (SELECT state::text FROM user_state WHERE user_id = %(u)s), "
                "ARRAY(SELECT item_id FROM user_events WHERE user_id = %(u)s "
                "AND item_id IS NOT NULL AND event_type = ANY(%(types)s) "
                "ORDER BY occurred_at DESC LIMIT %(limit)s)",
                {"u": user_id, "types": _CONSUMED_TYPES, "limit": limit},
            )
            row = await cur.fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        state = UserState.model_validate_json(row[0]) if row[0] is not None else None
        return state, set(row[1] or ())

    async def version(self, user_id: str) -> int | None:
        """The stored version (accepted events) of a user's row."""
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT version FROM user_state WHERE user_id = %s", (user_id,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else None

    # ---- writes (the users worker) -----------------------------------------------------
    async def write(
        self,
        accepted: Sequence[tuple[Accepted, list[Pair]]],
        states: Iterable[UserState],
        covisit: PgCovisitation | None = None,
    ) -> WriteResult:
        """Store a batch's accepted events, their co-visits (unless ``covisit`` is None)
        and the new states at once: one transaction, one statement."""
        events, pairs = _event_rows(accepted, with_pairs=covisit is not None)
        state_rows = _state_rows(states)
        params = {
            "events": _json(events),
            "pairs": _json(pairs),
            "states": _json(state_rows),
        }
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(_WRITE_BATCH, params, prepare=True)
            row = await cur.fetchone()
        assert row is not None
        rows, inserted, merged, _ = (int(v) for v in row)
        return WriteResult(
            inserted=inserted,
            redelivered=rows - inserted,
            pairs=merged,
            states=len(state_rows),
        )


def _json(rows: list[Any]) -> str:
    return json.dumps(rows, separators=(",", ":"), default=_iso)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _event_rows(
    accepted: Sequence[tuple[Accepted, list[Pair]]], *, with_pairs: bool
) -> tuple[list[dict[str, Any]], list[tuple[str, str, str, float]]]:
    """Event rows (each event id once) and ``(event_id, item, other, log2 weight)``
    co-visit contributions of those events."""
    rows: list[dict[str, Any]] = []
    pairs: list[tuple[str, str, str, float]] = []
    seen: set[str] = set()
    for a, event_pairs in accepted:
        e = a.event
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        pos = a.position
        rows.append(
            {
                "event_id": e.event_id,
                "user_id": e.user_id,
                "item_id": e.item_id,
                "event_type": e.event_type.value,
                "rating": e.rating,
                "query": e.query,
                "session_id": e.session_id or a.session_id,
                "rec_request_id": e.rec_request_id,
                "occurred_at": e.occurred_at,
                "positive": is_positive(e),
                "weight": event_weight(e),
                "kafka_partition": pos.partition if pos is not None else None,
                "kafka_offset": pos.offset if pos is not None else None,
                "kafka_topic_id": pos.topic_id if pos is not None else None,
            }
        )
        if with_pairs:
            pairs.extend((e.event_id, x, y, w) for x, y, w in event_pairs)
    return rows, pairs


def _state_rows(states: Iterable[UserState]) -> list[dict[str, Any]]:
    return [
        {
            "user_id": s.user_id,
            "version": s.events,
            "warmth": s.warmth.value,
            "positives": s.positives,
            "engagement": s.engagement,
            "engagement_at": s.engagement_at,
            "session_id": s.session.session_id if s.session else None,
            "last_event_at": s.last_event_at,
            "state": s.model_dump_json(),
        }
        for s in states
    ]
