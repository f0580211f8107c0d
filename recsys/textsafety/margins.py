"""Instruction-likeness margins of catalog sentences, kept in Postgres.

:class:`~recsys.textsafety.instruction.InstructionScorer` embeds every sentence it scores;
its memo lives in one process. Catalog text is the same for every serve process and
every restart, so its sentences' margins are stored (``migrations/0510_instruction_margins.sql``)
per scorer version: the enrich worker scores an item's text when it writes the item (with
the LLM on), a serve process preloads the stored margins at start and looks a catalog
sentence up here before embedding it, and writes back what it had to embed. Only catalog
text is stored — queries and conversation turns are never written here.

Postgres being away never fails a request: a failed read counts as a miss (the sentence
is embedded), a failed write is logged and dropped (other errors are bugs and raise).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.exceptions import DatabaseUnavailable, DataRejected

__all__ = ["MarginStore", "PgInstructionMargins"]

log = logging.getLogger(__name__)


class MarginStore(Protocol):
    """Where catalog sentences' margins are shared (per scorer version)."""

    async def get(self, scorer: str, sentences: Sequence[str]) -> dict[str, float]:
        """The stored margins of those ``sentences`` that have one."""
        ...

    async def put(self, scorer: str, margins: Mapping[str, float]) -> None:
        """Store margins (a sentence already stored keeps its margin)."""
        ...

    async def load(self, scorer: str, limit: int) -> dict[str, float]:
        """Up to ``limit`` stored margins, the most recently scored first."""
        ...


class PgInstructionMargins:
    """:class:`MarginStore` over the ``instruction_margins`` table."""

    def __init__(self, pool: AsyncConnectionPool, acquire_timeout_s: float = 5.0) -> None:
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s

    async def _rows(self, query: str, params: Any, what: str) -> list[Any]:
        try:
            async with db.connection(self.pool, "instruction margins", self.acquire_timeout_s) as c:
                cur = await c.execute(query, params)
                return list(await cur.fetchall())
        except DatabaseUnavailable as exc:  # a miss, not a failure: the caller embeds instead
            log.warning("instruction margins: %s failed (%s)", what, exc)
            return []

    async def get(self, scorer: str, sentences: Sequence[str]) -> dict[str, float]:
        if not sentences:
            return {}
        rows = await self._rows(
            "SELECT sentence, margin FROM instruction_margins "
            "WHERE scorer = %s AND sentence = ANY(%s)",
            (scorer, list(sentences)),
            "a read",
        )
        return {r[0]: float(r[1]) for r in rows}

    async def put(self, scorer: str, margins: Mapping[str, float]) -> None:
        if not margins:
            return
        sentences = sorted(margins)  # one order for every writer: no deadlocks
        try:
            async with db.connection(self.pool, "instruction margins", self.acquire_timeout_s) as c:
                await c.execute(
                    "INSERT INTO instruction_margins (scorer, sentence, margin) "
                    "SELECT %s, s, m FROM unnest(%s::text[], %s::real[]) AS t(s, m) "
                    "ON CONFLICT (scorer, sentence) DO NOTHING",
                    (scorer, sentences, [margins[s] for s in sentences]),
                )
        except (DatabaseUnavailable, DataRejected) as exc:
            log.warning("instruction margins: a write of %d failed (%s)", len(margins), exc)

    async def load(self, scorer: str, limit: int) -> dict[str, float]:
        if limit <= 0:
            return {}
        rows = await self._rows(
            "SELECT sentence, margin FROM instruction_margins WHERE scorer = %s "
            "ORDER BY scored_at DESC LIMIT %s",
            (scorer, limit),
            "the preload",
        )
        return {r[0]: float(r[1]) for r in rows}
