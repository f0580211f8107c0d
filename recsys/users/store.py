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

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.cf.covisit import Pair
from recsys.cf.pg_covisit import PgCovisitation
from recsys.users.state import VISIT_EVENTS, Accepted, UserState, event_weight, is_positive

__all__ = ["PgUserStates", "WriteResult"]

_INSERT_EVENTS = """
INSERT INTO user_events (event_id, user_id, item_id, event_type, rating, query, session_id,
                         rec_request_id, occurred_at, positive, weight, kafka_partition,
                         kafka_offset)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::float8[], %b::text[],
                     %b::text[], %b::text[], %b::timestamptz[], %b::bool[], %b::real[],
                     %b::int[], %b::bigint[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

_UPSERT_STATES = """
INSERT INTO user_state (user_id, version, warmth, positives, engagement, engagement_at,
                        session_id, last_event_at, state, updated_at)
SELECT u.user_id, u.version, u.warmth, u.positives, u.engagement, u.engagement_at,
       u.session_id, u.last_event_at, u.state::jsonb, now()
FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::int[], %b::float8[], %b::timestamptz[],
            %b::text[], %b::timestamptz[], %b::text[])
    AS u(user_id, version, warmth, positives, engagement, engagement_at, session_id,
         last_event_at, state)
ON CONFLICT (user_id) DO UPDATE SET
    version = EXCLUDED.version, warmth = EXCLUDED.warmth, positives = EXCLUDED.positives,
    engagement = EXCLUDED.engagement, engagement_at = EXCLUDED.engagement_at,
    session_id = EXCLUDED.session_id, last_event_at = EXCLUDED.last_event_at,
    state = EXCLUDED.state, updated_at = now()
WHERE user_state.version < EXCLUDED.version
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
        """Store a batch's accepted events, their co-visits and the new states at once."""
        rows = _event_rows([a for a, _ in accepted])
        state_rows = _state_rows(states)
        async with self._conn() as conn, conn.transaction():
            inserted: set[str] = set()
            if rows[0]:
                cur = await conn.execute(_INSERT_EVENTS, rows)
                inserted = {r[0] for r in await cur.fetchall()}
            pairs = 0
            if covisit is not None and inserted:
                fresh: list[Pair] = []
                counted: set[str] = set()
                for a, event_pairs in accepted:
                    event_id = a.event.event_id
                    if event_id in inserted and event_id not in counted:
                        counted.add(event_id)
                        fresh.extend(event_pairs)
                pairs = await covisit.add_in(conn, fresh)
            if state_rows[0]:
                await conn.execute(_UPSERT_STATES, state_rows)
        return WriteResult(
            inserted=len(inserted),
            redelivered=len(rows[0]) - len(inserted),
            pairs=pairs,
            states=len(state_rows[0]),
        )


def _event_rows(accepted: Sequence[Accepted]) -> tuple[list[Any], ...]:
    cols: tuple[list[Any], ...] = tuple([] for _ in range(13))
    seen: set[str] = set()
    for a in accepted:
        e = a.event
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        partition, offset = a.position if a.position is not None else (None, None)
        values = (
            e.event_id,
            e.user_id,
            e.item_id,
            e.event_type.value,
            e.rating,
            e.query,
            e.session_id or a.session_id,
            e.rec_request_id,
            e.occurred_at,
            is_positive(e),
            event_weight(e),
            partition,
            offset,
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols


def _state_rows(states: Iterable[UserState]) -> tuple[list[Any], ...]:
    cols: tuple[list[Any], ...] = tuple([] for _ in range(9))
    for s in states:
        values = (
            s.user_id,
            s.events,
            s.warmth.value,
            s.positives,
            s.engagement,
            s.engagement_at,
            s.session.session_id if s.session else None,
            s.last_event_at,
            s.model_dump_json(),
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols
