"""The Postgres side of user state: the ``user_state`` read model and ``user_events``.

Serving reads users through :class:`PgUserStates` (``get``, ``get_many``,
``consumed``) — one indexed lookup, no Kafka. A batch of the ``users`` worker is
written in one transaction (:mod:`recsys.users.batch_write`: events into
``user_events``, their co-visits, the new states where they move forward);
:meth:`PgUserStates.write` does it on the async pool (tests, synthetic worlds), the
worker through its own writer thread (:class:`recsys.users.batch_write.BatchWriter`).

Errors are mapped by :func:`recsys.db.db_error`: connection trouble, deadlocks and
serialization failures become :class:`DatabaseUnavailable` (the worker retries the
batch); values Postgres refuses become :class:`DataRejected` (the worker isolates and
dead-letters the event that carries them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.cf.covisit import Pair
from recsys.cf.pg_covisit import PgCovisitation
from recsys.users.batch_write import WriteResult, prepare, write_async
from recsys.users.state import VISIT_EVENTS, Accepted, UserState

__all__ = ["PgUserStates", "WriteResult"]

#: How long a write waits for a pooled connection before the batch is retried.
_ACQUIRE_TIMEOUT_S = 30.0

_CONSUMED_TYPES = sorted(t.value for t in VISIT_EVENTS)


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
        and the new states at once: one transaction (:mod:`recsys.users.batch_write`)."""
        batch = prepare(accepted, states, with_covisit=covisit is not None)
        async with self._conn() as conn:
            return await write_async(conn, batch)
