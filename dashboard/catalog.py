"""The catalog as the dashboard shows it: read-only SQL over the item store.

Counts by enrichment status, a searchable list, one item's raw vs enriched text and its
nearest neighbours under each vector (the raw-text and the enriched-text embedding,
through their HNSW indexes). Queries are parameterised; identifiers are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from recsys import db
from recsys.exceptions import DatabaseUnavailable

__all__ = ["Catalog", "Neighbour"]

_VECTOR = {"raw": "raw_embedding", "enriched": "enriched_embedding"}


@dataclass(frozen=True)
class Neighbour:
    """An item near another under one vector."""

    item_id: str
    title: str
    similarity: float


class Catalog:
    """Read-only views of ``items`` and ``user_state``."""

    def __init__(self, dsn: str) -> None:
        self.pool: ConnectionPool = db.pool(dsn, min_size=0, max_size=2, statement_timeout_ms=5000)
        self.pool.open(wait=False)

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()

    def _rows(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        try:
            with self.pool.connection(timeout=5) as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query, params)
                return list(cur.fetchall())
        except (psycopg.Error, TimeoutError) as exc:
            raise DatabaseUnavailable(f"catalog query failed: {exc}") from exc

    def status_counts(self) -> dict[str, int]:
        """Items per enrichment status, plus ``total`` and ``eligible``."""
        rows = self._rows(
            "SELECT enrichment_status AS s, count(*) AS n FROM items GROUP BY 1 ORDER BY 1"
        )
        counts = {r["s"]: int(r["n"]) for r in rows}
        extra = self._rows(
            "SELECT count(*) AS total, count(*) FILTER (WHERE NOT deleted AND available "
            "AND raw_embedding IS NOT NULL) AS eligible FROM items"
        )[0]
        return counts | {"total": int(extra["total"]), "eligible": int(extra["eligible"])}

    def items(self, search: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest items, or those whose id or title contains ``search``."""
        cols = (
            "item_id, title, enrichment_status, version, deleted, available, "
            "array_length(tags, 1) AS tags, updated_at"
        )
        if search:
            like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            return self._rows(
                f"SELECT {cols} FROM items WHERE item_id ILIKE %(q)s OR title ILIKE %(q)s "
                "ORDER BY updated_at DESC LIMIT %(n)s",
                {"q": like, "n": limit},
            )
        return self._rows(
            f"SELECT {cols} FROM items ORDER BY updated_at DESC LIMIT %(n)s", {"n": limit}
        )

    def item(self, item_id: str) -> dict[str, Any] | None:
        """One item's text, enrichment and provenance (no vectors)."""
        rows = self._rows(
            "SELECT item_id, version, change_id, deleted, available, title, categories, "
            "description, attributes, summary, themes, mood, audience, tags, content_hash, "
            "embedding_model, embedding_dim, prompt_version, llm_model, enrichment_status, "
            "enrichment_error, enriched_at, occurred_at, updated_at FROM items "
            "WHERE item_id = %s",
            (item_id,),
        )
        return rows[0] if rows else None

    def neighbours(self, item_id: str, space: str, k: int = 8) -> list[Neighbour]:
        """The ``k`` nearest eligible items under ``space``'s vector (cosine)."""
        column = _VECTOR[space]
        vec = self._rows(f"SELECT {column}::text AS v FROM items WHERE item_id = %s", (item_id,))
        if not vec or vec[0]["v"] is None:
            return []
        rows = self._rows(
            f"SELECT item_id, title, 1 - ({column} <=> %(v)s::vector) AS sim FROM items "
            f"WHERE item_id <> %(id)s AND NOT deleted AND {column} IS NOT NULL "
            f"ORDER BY {column} <=> %(v)s::vector LIMIT %(k)s",
            {"v": vec[0]["v"], "id": item_id, "k": k},
        )
        return [Neighbour(r["item_id"], r["title"], float(r["sim"])) for r in rows]

    def users(self, limit: int = 12) -> list[dict[str, Any]]:
        """Recently active users per warmth bucket (for the try-it picker)."""
        return self._rows(
            "SELECT user_id, warmth, positives FROM ("
            " SELECT user_id, warmth, positives, row_number() OVER ("
            "  PARTITION BY warmth ORDER BY updated_at DESC) AS r FROM user_state) s "
            "WHERE r <= %s ORDER BY warmth, positives DESC",
            (limit,),
        )

    def conversation(self, user_id: str, conversation_id: str) -> list[dict[str, Any]]:
        """A conversation's stored turns, oldest first: ``turn``, ``text`` (as stored:
        redacted and screened), ``response`` (the RecResponse as JSON)."""
        return self._rows(
            "SELECT turn, turn_record ->> 'text' AS text, response::text AS response "
            "FROM conversation_turns WHERE user_id = %s AND conversation_id = %s ORDER BY turn",
            (user_id, conversation_id),
        )

    def titles(self, item_ids: list[str]) -> dict[str, str]:
        """Titles of items."""
        rows = self._rows("SELECT item_id, title FROM items WHERE item_id = ANY(%s)", (item_ids,))
        return {r["item_id"]: r["title"] or r["item_id"] for r in rows}
