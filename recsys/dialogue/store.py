"""Conversation turns in Postgres (``conversation_turns``, migration 0500).

One row per answered turn, inserted with ``ON CONFLICT DO NOTHING`` on (user,
conversation, turn): the first answer of a turn is the only one ever stored, so a
redelivered request changes nothing and gets the stored answer again. Failures map
through :func:`recsys.db.db_error` like every store's: connection trouble, deadlocks
and serialization failures retry, refused values dead-letter the turn.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.dialogue.signals import StoredTurn
from recsys.records import LlmInvolvement, RecResponse
from recsys.users.state import Position

__all__ = ["ConversationStore", "MemoryConversations", "PgConversations", "TurnRow"]

#: How long a statement waits for a pooled connection before Postgres counts as away.
ACQUIRE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TurnRow:
    """A stored turn, its answer, and where its request sat in ``rec.requests``."""

    user_id: str
    conversation_id: str
    turn: StoredTurn
    response: RecResponse
    logs: list[LlmInvolvement]
    position: Position | None = None


class ConversationStore(Protocol):
    async def load(self, user_id: str, conversation_id: str) -> list[TurnRow]:
        """The conversation's stored turns, in turn order."""
        ...

    async def put(self, row: TurnRow) -> bool:
        """Store a turn unless one with its number is stored; True if this one was."""
        ...


class MemoryConversations:
    """The same contract in memory (benchmarks, unit tests)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int], TurnRow] = {}

    async def load(self, user_id: str, conversation_id: str) -> list[TurnRow]:
        found = [r for (u, c, _), r in self.rows.items() if (u, c) == (user_id, conversation_id)]
        return sorted(found, key=lambda r: r.turn.turn)

    async def put(self, row: TurnRow) -> bool:
        key = (row.user_id, row.conversation_id, row.turn.turn)
        if key in self.rows:
            return False
        self.rows[key] = row
        return True


_INSERT = """
INSERT INTO conversation_turns (user_id, conversation_id, turn, request_id, turn_record,
                                response, llm_logs, kafka_topic_id, kafka_partition,
                                kafka_offset)
VALUES (%(user_id)s, %(conversation_id)s, %(turn)s, %(request_id)s, %(turn_record)s,
        %(response)s, %(llm_logs)s, %(topic_id)s, %(partition)s, %(offset)s)
ON CONFLICT (user_id, conversation_id, turn) DO NOTHING
RETURNING 1
"""


class PgConversations:
    """:class:`ConversationStore` over Postgres."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection]:
        async with db.connection(self.pool, "conversations", ACQUIRE_TIMEOUT_S) as conn:
            yield conn

    async def load(self, user_id: str, conversation_id: str) -> list[TurnRow]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT turn_record::text, response::text, llm_logs::text, kafka_topic_id, "
                "kafka_partition, kafka_offset FROM conversation_turns "
                "WHERE user_id = %s AND conversation_id = %s ORDER BY turn",
                (user_id, conversation_id),
            )
            rows = await cur.fetchall()
        out = []
        for record, response, logs, topic_id, partition, offset in rows:
            position = (
                Position(topic_id or "", partition, offset) if partition is not None else None
            )
            out.append(
                TurnRow(
                    user_id=user_id,
                    conversation_id=conversation_id,
                    turn=StoredTurn.model_validate_json(record),
                    response=RecResponse.model_validate_json(response),
                    logs=[LlmInvolvement.model_validate(x) for x in json.loads(logs)],
                    position=position,
                )
            )
        return out

    async def put(self, row: TurnRow) -> bool:
        pos = row.position
        params = {
            "user_id": row.user_id,
            "conversation_id": row.conversation_id,
            "turn": row.turn.turn,
            "request_id": row.turn.request_id,
            "turn_record": Jsonb(row.turn.model_dump(mode="json")),
            "response": Jsonb(row.response.model_dump(mode="json")),
            "llm_logs": Jsonb([x.model_dump(mode="json") for x in row.logs]),
            "topic_id": pos.topic_id if pos is not None else None,
            "partition": pos.partition if pos is not None else None,
            "offset": pos.offset if pos is not None else None,
        }
        async with self._conn() as conn:
            cur = await conn.execute(_INSERT, params)
            return await cur.fetchone() is not None

    async def turns(self, user_id: str, conversation_id: str) -> Sequence[int]:
        """The stored turn numbers (tests, tools)."""
        return [r.turn.turn for r in await self.load(user_id, conversation_id)]
