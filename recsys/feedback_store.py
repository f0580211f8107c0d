"""Postgres state of the feedback join: impressions with open windows, recent events.

Every write is idempotent — impressions are keyed by request_id, events by
(user_id, event_id), both ``ON CONFLICT DO NOTHING`` — so a batch re-delivered after a
crash changes nothing, and an impression already emitted stays emitted. Errors are mapped
by :func:`recsys.db.db_error`: connection failures become :class:`DatabaseUnavailable`
(the worker retries the batch), refused values :class:`DataRejected` (the worker
dead-letters the record that carries them).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.feedback import OUTCOME_EVENTS
from recsys.records import RecResponse, UserEvent

__all__ = ["OpenImpression", "PgFeedbackStore"]

#: How long a statement waits for a pooled connection before the batch is retried.
_ACQUIRE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class OpenImpression:
    """An impression whose window is due to close."""

    partition: int
    response: RecResponse


class PgFeedbackStore:
    """Impressions and events of the feedback join, in Postgres."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return db.connection(self.pool, "feedback store", _ACQUIRE_TIMEOUT_S)

    async def add(
        self, impressions: Sequence[tuple[int, RecResponse]], events: Sequence[UserEvent]
    ) -> None:
        """Store impressions (with their partition) and outcome events, in one transaction."""
        rows_i = [
            (r.request_id, r.user_id, partition, r.produced_at, r.model_dump_json())
            for partition, r in impressions
        ]
        rows_e = [
            (
                e.user_id,
                e.event_id,
                e.item_id,
                e.event_type.value,
                e.rating,
                e.rec_request_id,
                e.occurred_at,
            )
            for e in events
            if e.item_id is not None and e.event_type in OUTCOME_EVENTS
        ]
        if not rows_i and not rows_e:
            return
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            if rows_i:
                await cur.executemany(
                    "INSERT INTO feedback_impressions "
                    "(request_id, user_id, kafka_partition, impression_at, response) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING",
                    rows_i,
                )
            if rows_e:
                await cur.executemany(
                    "INSERT INTO feedback_events (user_id, event_id, item_id, event_type, "
                    "rating, rec_request_id, occurred_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (user_id, event_id) DO NOTHING",
                    rows_e,
                )

    async def due(
        self, partition: int, event_time: datetime | None, span_s: float, limit: int = 1000
    ) -> list[OpenImpression]:
        """Open impressions of ``partition`` whose window plus lateness (``span_s``) has
        passed in event time, or in wall time since they were stored (idle partitions)."""
        span = timedelta(seconds=span_s)
        async with self._conn() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT response::text FROM feedback_impressions "
                "WHERE emitted_at IS NULL AND kafka_partition = %(p)s "
                "AND ((%(t)s::timestamptz IS NOT NULL AND impression_at + %(span)s <= %(t)s) "
                "     OR stored_at + %(span)s <= now()) "
                "ORDER BY impression_at, request_id LIMIT %(limit)s",
                {"p": partition, "t": event_time, "span": span, "limit": limit},
            )
            rows = await cur.fetchall()
        return [OpenImpression(partition, RecResponse.model_validate_json(r[0])) for r in rows]

    async def events_for(
        self, user_ids: Sequence[str], since: datetime, until: datetime
    ) -> list[UserEvent]:
        """Stored outcome events of some users with ``since <= occurred_at <= until``."""
        async with self._conn() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT user_id, event_id, item_id, event_type, rating, rec_request_id, "
                "occurred_at FROM feedback_events "
                "WHERE user_id = ANY(%s) AND occurred_at >= %s AND occurred_at <= %s",
                (list(user_ids), since, until),
            )
            rows = await cur.fetchall()
        return [
            UserEvent(
                user_id=u,
                event_id=eid,
                item_id=item,
                event_type=kind,
                rating=rating,
                rec_request_id=rid,
                occurred_at=at,
            )
            for u, eid, item, kind, rating, rid, at in rows
        ]

    async def mark_emitted(self, request_ids: Sequence[str]) -> None:
        """Close impressions whose examples were delivered."""
        if not request_ids:
            return
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE feedback_impressions SET emitted_at = now() "
                "WHERE request_id = ANY(%s) AND emitted_at IS NULL",
                (list(request_ids),),
            )

    async def prune(self, retention_s: float) -> tuple[int, int]:
        """Forget emitted impressions and stored events older than ``retention_s``."""
        keep = timedelta(seconds=retention_s)
        async with self._conn() as conn, conn.cursor() as cur:
            await cur.execute(
                "DELETE FROM feedback_impressions WHERE emitted_at < now() - %s", (keep,)
            )
            impressions = cur.rowcount
            await cur.execute("DELETE FROM feedback_events WHERE stored_at < now() - %s", (keep,))
            return impressions, cur.rowcount

    async def counts(self) -> dict[str, int]:
        """Open and emitted impressions, stored events (for the demo and tests)."""
        async with self._conn() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT count(*) FILTER (WHERE emitted_at IS NULL), "
                "count(*) FILTER (WHERE emitted_at IS NOT NULL), "
                "(SELECT count(*) FROM feedback_events) FROM feedback_impressions"
            )
            row = await cur.fetchone()
        assert row is not None
        return {"open": row[0], "emitted": row[1], "events": row[2]}
