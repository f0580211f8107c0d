"""One batch of the ``users`` worker written to Postgres: rows built once, one statement.

:func:`prepare` turns a batch's accepted events (with their co-visits) and new states
into three JSON documents; :func:`write` (a sync connection, the worker's writer
thread) and :func:`write_async` store them in one transaction:

1. the events go into ``user_events`` (``ON CONFLICT (event_id) DO NOTHING``): a
   conflict is an event already stored — a redelivery — and what derives from it is
   skipped;
2. the batch's co-visits, **summed per pair in the batch** (in log2 space; one row per
   unordered pair, :mod:`recsys.cf.pg_covisit`) and in key order (no deadlocks between
   workers), are merged into ``covisit_pair`` — if the insert added every event of the
   batch, which is the rule;
3. each user's row is upserted where the stored ``version`` is lower, straight from the
   state's JSON document (the read-model columns are taken from it in SQL).

When some events were already stored (step 1 reports them), the batch's sums would
count them again: the statement then leaves ``covisit`` alone and returns their ids,
and the co-visits of the events it did add are summed again without them and merged by
a second statement in the same transaction. Either way an event's co-visits land in
the transaction that inserts it, exactly once.

Why this shape (figures in ``docs/workers/users.md``): a batch's co-visits are ~8 rows
per event and dominate the write; summing them in Python is cheap, and sending the
sums instead of every contribution spares Postgres a JSON array eight times the batch and a
window aggregate over it. States travel as the documents pydantic already renders,
not as JSON strings inside JSON (no escaping, one parse).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from pydantic import TypeAdapter

from recsys.cf.covisit import Pair
from recsys.cf.pg_covisit import COVISIT_INSERT, undirected_sums
from recsys.db import db_error
from recsys.users.state import Accepted, UserState, event_weight, is_positive

__all__ = ["BatchWriter", "PreparedBatch", "WriteResult", "prepare", "write", "write_async"]

#: The co-visit sums as rows of ``covisit_pair``, in the order they were sent.
_COVISIT_ROWS = """SELECT p ->> 0, p ->> 1, (p ->> 2)::float8
    FROM json_array_elements(%(covisits)s::json) AS p"""

#: Events, co-visit sums and states in one statement (one round trip).
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
), cv AS (
    {COVISIT_INSERT.format(rows=_COVISIT_ROWS + " WHERE (SELECT count(*) FROM ins) = %(n)s")}
    RETURNING 1
), st AS (
    INSERT INTO user_state (user_id, version, warmth, positives, engagement, engagement_at,
                            session_id, last_event_at, state, updated_at)
    SELECT s ->> 'user_id', (s ->> 'events')::bigint, s ->> 'warmth',
           (s ->> 'positives')::int, (s ->> 'engagement')::float8,
           (s ->> 'engagement_at')::timestamptz, s -> 'session' ->> 'session_id',
           (s ->> 'last_event_at')::timestamptz, s, now()
    FROM jsonb_array_elements(%(states)s::jsonb) AS s
    ON CONFLICT (user_id) DO UPDATE SET
        version = EXCLUDED.version, warmth = EXCLUDED.warmth,
        positives = EXCLUDED.positives, engagement = EXCLUDED.engagement,
        engagement_at = EXCLUDED.engagement_at, session_id = EXCLUDED.session_id,
        last_event_at = EXCLUDED.last_event_at, state = EXCLUDED.state, updated_at = now()
    WHERE user_state.version < EXCLUDED.version
    RETURNING 1
), added AS (
    SELECT count(*) AS n FROM ins
)
SELECT added.n, (SELECT count(*) FROM cv), (SELECT count(*) FROM st),
       CASE WHEN added.n < %(n)s THEN
           ARRAY(SELECT event_id FROM ev EXCEPT SELECT event_id FROM ins)
       END
FROM added
"""

#: The co-visits of the events a redelivery-bearing batch did add (same transaction).
_MERGE_COVISITS = COVISIT_INSERT.format(rows=_COVISIT_ROWS)

_STATES = TypeAdapter(list[UserState])


@dataclass(frozen=True)
class PreparedBatch:
    """A batch's rows as sent to Postgres (built outside the writing thread)."""

    #: JSON array of ``user_events`` rows, each event id once.
    events: str
    #: Rows in ``events``.
    n_events: int
    #: JSON array of ``[a, b, log2 weight]`` with ``a < b`` (one row of ``covisit_pair``
    #: per unordered pair), summed per pair, in key order (one lock order for every
    #: writer).
    covisits: str
    #: JSON array of the new states (documents as stored in ``user_state.state``).
    states: bytes
    #: States in ``states``.
    n_states: int
    #: Each event's own co-visits (only needed when some events were already stored).
    pairs_by_event: dict[str, list[Pair]]

    @property
    def params(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "n": self.n_events,
            "covisits": self.covisits,
            "states": self.states.decode(),
        }

    def covisits_without(self, stored: Collection[str]) -> str | None:
        """The summed co-visits of the events not in ``stored`` (None: there are none)."""
        merged = undirected_sums(
            chain.from_iterable(
                pairs for event_id, pairs in self.pairs_by_event.items() if event_id not in stored
            )
        )
        return _json(merged) if merged else None


@dataclass(frozen=True)
class WriteResult:
    """What one batch write did."""

    inserted: int
    redelivered: int
    pairs: int
    states: int


def prepare(
    accepted: Sequence[tuple[Accepted, list[Pair]]],
    states: Iterable[UserState],
    *,
    with_covisit: bool = True,
) -> PreparedBatch:
    """The rows of a batch: events (each id once), co-visit sums, state documents."""
    rows: list[dict[str, Any]] = []
    pairs_by_event: dict[str, list[Pair]] = {}
    for a, event_pairs in accepted:
        e = a.event
        if e.event_id in pairs_by_event:
            continue  # the same id twice in one batch (two users): the first one is stored
        pairs_by_event[e.event_id] = event_pairs if with_covisit else []
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
                "occurred_at": e.occurred_at.isoformat(),
                "positive": is_positive(e),
                "weight": event_weight(e),
                "kafka_partition": pos.partition if pos is not None else None,
                "kafka_offset": pos.offset if pos is not None else None,
                "kafka_topic_id": pos.topic_id if pos is not None else None,
            }
        )
    merged = undirected_sums(chain.from_iterable(pairs_by_event.values()))
    state_list = list(states)
    return PreparedBatch(
        events=_json(rows),
        n_events=len(rows),
        covisits=_json(merged),
        states=_STATES.dump_json(state_list),
        n_states=len(state_list),
        pairs_by_event=pairs_by_event,
    )


class BatchWriter:
    """Writes prepared batches on a sync pool: the worker calls it from a thread of its
    own, so that Postgres works on one batch while Python prepares the next (libpq
    waits for the server without holding the GIL)."""

    def __init__(self, pool: ConnectionPool, acquire_timeout_s: float = 30.0) -> None:
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s

    def write(self, batch: PreparedBatch) -> WriteResult:
        """Store ``batch`` in one transaction; nothing is written when it raises.

        Raises:
            DatabaseUnavailable: Postgres away, a deadlock, a timeout (write it again).
            DataRejected: Postgres refused a value of some event in it.
            DatabaseError: anything else (a bug).
        """
        try:
            with self.pool.connection(timeout=self.acquire_timeout_s) as conn:
                return write(conn, batch)
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise db_error(exc, "user states") from exc


def write(conn: psycopg.Connection[Any], batch: PreparedBatch) -> WriteResult:
    """Store ``batch`` on a sync connection, in one transaction."""
    with conn.transaction():
        row = conn.execute(_WRITE_BATCH, batch.params, prepare=True).fetchone()
        assert row is not None
        extra = _redelivered_covisits(batch, row[3])
        if extra is not None:
            conn.execute(_MERGE_COVISITS, {"covisits": extra})
    return _result(batch, row)


async def write_async(conn: psycopg.AsyncConnection[Any], batch: PreparedBatch) -> WriteResult:
    """Store ``batch`` on an async connection, in one transaction."""
    async with conn.transaction():
        cur = await conn.execute(_WRITE_BATCH, batch.params, prepare=True)
        row = await cur.fetchone()
        assert row is not None
        extra = _redelivered_covisits(batch, row[3])
        if extra is not None:
            await conn.execute(_MERGE_COVISITS, {"covisits": extra})
    return _result(batch, row)


def _redelivered_covisits(batch: PreparedBatch, stored: list[str] | None) -> str | None:
    """The co-visits still to merge when some events were stored already (else None)."""
    if not stored:
        return None
    return batch.covisits_without(set(stored))


def _result(batch: PreparedBatch, row: tuple[Any, ...]) -> WriteResult:
    inserted = int(row[0])
    return WriteResult(
        inserted=inserted,
        redelivered=batch.n_events - inserted,
        pairs=int(row[1]),
        states=batch.n_states,
    )


def _json(rows: list[Any]) -> str:
    return json.dumps(rows, separators=(",", ":"), default=_iso)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
