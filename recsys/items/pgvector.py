"""The Postgres + pgvector :class:`~recsys.items.store.ItemStore`.

Rows live in the ``items`` table (``migrations/0100_items.sql``); each vector space has
its own HNSW cosine index. Writes are versioned in SQL
(``ON CONFLICT … WHERE excluded.version > items.version``) so replays and late, older
versions change nothing, whatever the caller checked before. Every query is
parameterised; identifiers are composed with :mod:`psycopg.sql`.

kNN keeps ``hnsw.ef_search`` at least ``k`` and turns on pgvector's iterative scan:
a filtered HNSW search otherwise returns only the ``ef_search`` nearest rows *before*
filtering, i.e. fewer than ``k`` results (see DESIGN.md's measured facts).

Connection problems (Postgres down, restarting, a statement timeout) raise
:class:`~recsys.exceptions.DatabaseUnavailable` so callers can retry; other database
errors raise :class:`~recsys.exceptions.DatabaseError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.exceptions import DatabaseError
from recsys.items.model import (
    NUMERIC_PATTERN,
    ItemFilters,
    ItemRecord,
    ItemState,
    ItemWrite,
    Space,
    Tombstone,
    VersionBump,
    category_key,
    check_record,
)
from recsys.items.store import Neighbours
from recsys.records import EnrichmentStatus

__all__ = ["PgItemStore"]

_COLUMNS = (
    "item_id",
    "version",
    "change_id",
    "deleted",
    "available",
    "title",
    "categories",
    "category_keys",
    "description",
    "attributes",
    "summary",
    "themes",
    "mood",
    "audience",
    "tags",
    "content_hash",
    "raw_embedding",
    "enriched_embedding",
    "embedding_model",
    "embedding_dim",
    "prompt_version",
    "llm_model",
    "enrichment_status",
    "enrichment_error",
    "enriched_at",
    "occurred_at",
)
_SPACE_COLUMN: dict[str, str] = {"raw": "raw_embedding", "enriched": "enriched_embedding"}
_MAX_EF_SEARCH = 1000  # pgvector's upper bound; iterative scan covers larger k


def _as_array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    return np.asarray(value.to_numpy(), dtype=np.float32)


class PgItemStore:
    """Item rows in Postgres; vectors searched through HNSW indexes.

    ``ef_search`` is the ``hnsw.ef_search`` the pool's connections are configured with
    (``recsys.db`` pools: their ``ef_search`` argument); a kNN asking for more neighbours
    raises it for that query only.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        table: str = "items",
        ef_search: int = 100,
        acquire_timeout_s: float = 10.0,
    ) -> None:
        self.pool = pool
        self.table_name = table
        self.table = sql.Identifier(table)
        self.ef_search = ef_search
        self.acquire_timeout_s = acquire_timeout_s
        self._dim: int | None = None

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return db.connection(self.pool, "item store", self.acquire_timeout_s)

    # ---- metadata ---------------------------------------------------------------------
    async def dimension(self) -> int:
        if self._dim is None:
            async with self._conn() as conn:
                cur = await conn.execute(
                    "SELECT atttypmod FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attname = 'raw_embedding'",
                    (self.table_name,),
                )
                row = await cur.fetchone()
            if row is None:
                raise DatabaseError("the items table has no raw_embedding column: migrate first")
            self._dim = int(row[0])
        return self._dim

    # ---- writes -------------------------------------------------------------------------
    def _upsert_sql(self) -> sql.Composed:
        cols = [sql.Identifier(c) for c in _COLUMNS]
        updates = [
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in _COLUMNS
            if c != "item_id"
        ]
        return sql.SQL(
            "INSERT INTO {t} ({cols}, updated_at) VALUES ({vals}, now()) "
            "ON CONFLICT (item_id) DO UPDATE SET {updates}, updated_at = now() "
            "WHERE EXCLUDED.version > {t}.version RETURNING item_id"
        ).format(
            t=self.table,
            cols=sql.SQL(", ").join(cols),
            vals=sql.SQL(", ").join(sql.Placeholder(c) for c in _COLUMNS),
            updates=sql.SQL(", ").join(updates),
        )

    def _bump_sql(self) -> sql.Composed:
        return sql.SQL(
            "UPDATE {t} SET version = %(version)s, change_id = %(change_id)s, "
            "available = %(available)s, deleted = false, occurred_at = %(occurred_at)s, "
            "updated_at = now() WHERE item_id = %(item_id)s AND version < %(version)s "
            "RETURNING item_id"
        ).format(t=self.table)

    def _tombstone_sql(self) -> sql.Composed:
        return sql.SQL(
            "INSERT INTO {t} (item_id, version, change_id, deleted, content_hash, "
            "enrichment_status, occurred_at) VALUES (%(item_id)s, %(version)s, %(change_id)s, "
            "true, '', 'DELETED', %(occurred_at)s) "
            "ON CONFLICT (item_id) DO UPDATE SET version = EXCLUDED.version, "
            "change_id = EXCLUDED.change_id, deleted = true, occurred_at = EXCLUDED.occurred_at, "
            "updated_at = now() WHERE EXCLUDED.version > {t}.version RETURNING item_id"
        ).format(t=self.table)

    @staticmethod
    def _record_params(record: ItemRecord) -> dict[str, Any]:
        return {
            "item_id": record.item_id,
            "version": record.version,
            "change_id": record.change_id,
            "deleted": record.deleted,
            "available": record.available,
            "title": record.title,
            "categories": list(record.categories),
            "category_keys": sorted({category_key(c) for c in record.categories}),
            "description": record.description,
            "attributes": Jsonb(dict(record.attributes)),
            "summary": record.summary,
            "themes": list(record.themes),
            "mood": record.mood,
            "audience": record.audience,
            "tags": list(record.tags),
            "content_hash": record.content_hash,
            "raw_embedding": np.asarray(record.raw_embedding, dtype=np.float32),
            "enriched_embedding": np.asarray(record.enriched_embedding, dtype=np.float32),
            "embedding_model": record.embedding_model,
            "embedding_dim": record.embedding_dim,
            "prompt_version": record.prompt_version,
            "llm_model": record.llm_model,
            "enrichment_status": str(record.enrichment_status),
            "enrichment_error": record.enrichment_error,
            "enriched_at": record.enriched_at,
            "occurred_at": record.occurred_at,
        }

    async def apply(self, writes: Sequence[ItemWrite]) -> set[str]:
        dim = await self.dimension()
        records: list[dict[str, Any]] = []
        bumps: list[dict[str, Any]] = []
        tombstones: list[dict[str, Any]] = []
        for write in writes:
            if isinstance(write, ItemRecord):
                check_record(write, dim)
                records.append(self._record_params(write))
            elif isinstance(write, VersionBump):
                bumps.append(vars(write).copy())
            elif isinstance(write, Tombstone):
                tombstones.append(vars(write).copy())
        applied: set[str] = set()
        async with self._conn() as conn:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    for statement, params in (
                        (self._upsert_sql(), records),
                        (self._bump_sql(), bumps),
                        (self._tombstone_sql(), tombstones),
                    ):
                        if not params:
                            continue
                        await cur.executemany(statement, params, returning=True)
                        while True:
                            row = await cur.fetchone()
                            if row is not None:
                                applied.add(row[0])
                            if not cur.nextset():
                                break
            except psycopg.Error as exc:
                raise db.db_error(exc, "item store") from exc
        return applied

    # ---- reads --------------------------------------------------------------------------
    async def _fetch(
        self, query: sql.Composed, params: Any, *, binary: bool = False
    ) -> list[dict[str, Any]]:
        """Rows as dicts; ``binary`` for vectors (parsing their text form costs ~0.2 ms each)."""
        async with self._conn() as conn:
            try:
                async with conn.cursor(row_factory=dict_row, binary=binary) as cur:
                    await cur.execute(query, params)
                    return await cur.fetchall()
            except psycopg.Error as exc:
                raise db.db_error(exc, "item store") from exc

    async def states(self, item_ids: Sequence[str]) -> dict[str, ItemState]:
        if not item_ids:
            return {}
        rows = await self._fetch(
            sql.SQL(
                "SELECT item_id, version, change_id, content_hash, deleted, embedding_model, "
                "raw_embedding IS NOT NULL AS has_vectors FROM {t} WHERE item_id = ANY(%s)"
            ).format(t=self.table),
            (list(item_ids),),
        )
        return {
            r["item_id"]: ItemState(
                version=r["version"],
                content_hash=r["content_hash"],
                deleted=r["deleted"],
                embedding_model=r["embedding_model"],
                has_vectors=r["has_vectors"],
                change_id=r["change_id"],
            )
            for r in rows
        }

    def _where(
        self,
        column: sql.Identifier,
        filters: ItemFilters | None,
        exclude_ids: Sequence[str],
        prefix: str = "",
    ) -> tuple[sql.Composable, dict[str, Any]]:
        """The eligibility condition (and ``filters``, ``exclude_ids``) and its parameters,
        named with ``prefix`` so that several conditions can share one statement."""
        p = prefix
        conds: list[sql.Composable] = [
            sql.SQL("NOT deleted AND available AND {c} IS NOT NULL").format(c=column)
        ]
        params: dict[str, Any] = {}
        if exclude_ids:
            conds.append(sql.SQL(f"item_id <> ALL(%({p}exclude)s::text[])"))
            params[f"{p}exclude"] = list(exclude_ids)
        if filters is not None:
            if filters.categories_any:
                conds.append(sql.SQL(f"category_keys && %({p}cat_any)s::text[]"))
                params[f"{p}cat_any"] = sorted({category_key(c) for c in filters.categories_any})
            if filters.categories_none:
                conds.append(sql.SQL(f"NOT (category_keys && %({p}cat_none)s::text[])"))
                params[f"{p}cat_none"] = sorted({category_key(c) for c in filters.categories_none})
            if filters.attributes:
                conds.append(sql.SQL(f"attributes @> %({p}attrs)s::jsonb"))
                params[f"{p}attrs"] = json.dumps(dict(filters.attributes))
            for i, (name, (low, high)) in enumerate(sorted(filters.ranges.items())):
                key = f"{p}range_key_{i}"
                number = sql.SQL(
                    f"(CASE WHEN attributes ->> %({key})s ~ %({p}numeric)s "
                    f"THEN (attributes ->> %({key})s)::numeric END)"
                )
                params[key] = name
                params[f"{p}numeric"] = NUMERIC_PATTERN
                conds.append(sql.SQL("{n} IS NOT NULL").format(n=number))
                if low is not None:
                    conds.append(sql.SQL(f"{{n}} >= %({p}lo_{i})s").format(n=number))
                    params[f"{p}lo_{i}"] = low
                if high is not None:
                    conds.append(sql.SQL(f"{{n}} <= %({p}hi_{i})s").format(n=number))
                    params[f"{p}hi_{i}"] = high
        return sql.SQL(" AND ").join(conds), params

    async def knn(
        self,
        vector: np.ndarray,
        k: int,
        *,
        space: Space = "enriched",
        filters: ItemFilters | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> Neighbours:
        if k <= 0:
            return []
        column = sql.Identifier(_SPACE_COLUMN[space])
        where, params = self._where(column, filters, exclude_ids)
        params |= {"v": np.asarray(vector, dtype=np.float32), "k": k}
        query = sql.SQL(
            "WITH nearest AS MATERIALIZED ("
            " SELECT item_id, {c} <=> %(v)s AS distance FROM {t} WHERE {where}"
            " ORDER BY distance LIMIT %(k)s"
            ") SELECT item_id, 1 - distance AS similarity FROM nearest "
            "ORDER BY distance + 0, item_id"
        ).format(c=column, t=self.table, where=where)
        rows = await self._search(query, params, k)
        return [(r[0], float(r[1])) for r in rows]

    async def knn_and_similarities(
        self,
        vector: np.ndarray,
        k: int,
        *,
        space: Space = "enriched",
        filters: ItemFilters | None = None,
        exclude_ids: Sequence[str] = (),
        item_ids: Sequence[str] = (),
    ) -> tuple[Neighbours, dict[str, float]]:
        if k <= 0 or not item_ids:
            near = await self.knn(vector, k, space=space, filters=filters, exclude_ids=exclude_ids)
            sims = await self.similarities(vector, item_ids, space=space, filters=filters)
            return near, sims
        column = sql.Identifier(_SPACE_COLUMN[space])
        where, params = self._where(column, filters, exclude_ids)
        given, given_params = self._where(column, filters, (), prefix="g_")
        params |= given_params | {
            "v": np.asarray(vector, dtype=np.float32),
            "k": k,
            "ids": list(item_ids),
        }
        # the search's rows first, in its order; then the given items' (part 1)
        query = sql.SQL(
            "WITH nearest AS MATERIALIZED ("
            " SELECT item_id, {c} <=> %(v)s AS distance FROM {t} WHERE {where}"
            " ORDER BY distance LIMIT %(k)s"
            ") SELECT item_id, 1 - distance AS similarity, 0 AS part, distance + 0 AS d "
            "FROM nearest UNION ALL "
            "SELECT item_id, 1 - ({c} <=> %(v)s), 1, NULL FROM {t} "
            "WHERE item_id = ANY(%(ids)s) AND {given} "
            "ORDER BY part, d, item_id"
        ).format(c=column, t=self.table, where=where, given=given)
        rows = await self._search(query, params, k)
        near = [(r[0], float(r[1])) for r in rows if r[2] == 0]
        return near, {r[0]: float(r[1]) for r in rows if r[2] == 1}

    async def _search(self, query: sql.Composed, params: dict[str, Any], k: int) -> list[Any]:
        """Rows of a statement with an HNSW search for ``k`` rows (``ef_search`` raised
        for this statement when ``k`` exceeds the pool's)."""
        ef = min(max(self.ef_search, k), _MAX_EF_SEARCH)
        async with self._conn() as conn:
            try:
                if ef == self.ef_search and conn.autocommit:
                    # the pool's connections carry these settings (recsys.db): one round trip
                    cur = await conn.execute(query, params)
                    return await cur.fetchall()
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.execute(
                        sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef))
                    )
                    await cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                    await cur.execute(query, params)
                    return await cur.fetchall()
            except psycopg.Error as exc:
                raise db.db_error(exc, "item store") from exc

    async def get_many(
        self, item_ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[ItemRecord]:
        if not item_ids:
            return []
        cols = [c for c in _COLUMNS if c != "category_keys"]
        if not with_vectors:
            cols = [c for c in cols if c not in ("raw_embedding", "enriched_embedding")]
        rows = await self._fetch(
            sql.SQL("SELECT {cols}, updated_at FROM {t} WHERE item_id = ANY(%s)").format(
                cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols), t=self.table
            ),
            (list(item_ids),),
        )
        by_id = {r["item_id"]: r for r in rows}
        return [_record(by_id[i]) for i in dict.fromkeys(item_ids) if i in by_id]

    async def eligible_ids(
        self, item_ids: Sequence[str], filters: ItemFilters | None = None
    ) -> set[str]:
        if not item_ids:
            return set()
        where, params = self._where(sql.Identifier("raw_embedding"), filters, ())
        params["ids"] = list(item_ids)
        rows = await self._fetch(
            sql.SQL("SELECT item_id FROM {t} WHERE item_id = ANY(%(ids)s) AND {where}").format(
                t=self.table, where=where
            ),
            params,
        )
        return {r["item_id"] for r in rows}

    async def eligible_ids_each(
        self, item_ids: Sequence[str], filter_sets: Sequence[ItemFilters | None]
    ) -> list[set[str]]:
        if not item_ids or not filter_sets:
            return [set() for _ in filter_sets]
        column = sql.Identifier("raw_embedding")
        base, params = self._where(column, None, ())
        tests: list[sql.Composable] = []
        for n, filters in enumerate(filter_sets):
            where, named = self._where(column, filters, (), prefix=f"f{n}_")
            tests.append(sql.SQL("({w}) IS TRUE").format(w=where))
            params |= named
        params["ids"] = list(item_ids)
        rows = await self._fetch(
            sql.SQL(
                "SELECT item_id, ARRAY[{tests}] AS ok FROM {t} "
                "WHERE item_id = ANY(%(ids)s) AND {base}"
            ).format(tests=sql.SQL(", ").join(tests), t=self.table, base=base),
            params,
        )
        return [{r["item_id"] for r in rows if r["ok"][n]} for n in range(len(filter_sets))]

    async def vectors(
        self, item_ids: Sequence[str], *, space: Space = "enriched"
    ) -> dict[str, np.ndarray]:
        if not item_ids:
            return {}
        column = sql.Identifier(_SPACE_COLUMN[space])
        rows = await self._fetch(
            sql.SQL(
                "SELECT item_id, {c} AS v FROM {t} WHERE item_id = ANY(%s) AND {c} IS NOT NULL"
            ).format(c=column, t=self.table),
            (list(item_ids),),
            binary=True,
        )
        out = {}
        for r in rows:
            vec = _as_array(r["v"])
            if vec is not None:
                out[r["item_id"]] = vec
        return out

    async def similarities(
        self,
        vector: np.ndarray,
        item_ids: Sequence[str],
        *,
        space: Space = "enriched",
        filters: ItemFilters | None = None,
    ) -> dict[str, float]:
        if not item_ids:
            return {}
        column = sql.Identifier(_SPACE_COLUMN[space])
        where, params = self._where(column, filters, ())
        params |= {"v": np.asarray(vector, dtype=np.float32), "ids": list(item_ids)}
        rows = await self._fetch(
            sql.SQL(
                "SELECT item_id, 1 - ({c} <=> %(v)s) AS similarity FROM {t} "
                "WHERE item_id = ANY(%(ids)s) AND {where}"
            ).format(c=column, t=self.table, where=where),
            params,
        )
        return {r["item_id"]: float(r["similarity"]) for r in rows}

    async def categories(self) -> list[str]:
        rows = await self._fetch(
            sql.SQL(
                "SELECT DISTINCT unnest(categories) AS c FROM {t} "
                "WHERE NOT deleted AND available AND raw_embedding IS NOT NULL ORDER BY 1"
            ).format(t=self.table),
            None,
        )
        return [r["c"] for r in rows]

    async def count_eligible(
        self, filters: ItemFilters | None = None, exclude_ids: Sequence[str] = ()
    ) -> int:
        where, params = self._where(sql.Identifier("raw_embedding"), filters, exclude_ids)
        rows = await self._fetch(
            sql.SQL("SELECT count(*) AS n FROM {t} WHERE {where}").format(
                t=self.table, where=where
            ),
            params,
        )
        return int(rows[0]["n"])

    async def count(self, *, eligible_only: bool = False) -> int:
        where = (
            sql.SQL("WHERE NOT deleted AND available AND raw_embedding IS NOT NULL")
            if eligible_only
            else sql.SQL("")
        )
        rows = await self._fetch(
            sql.SQL("SELECT count(*) AS n FROM {t} {w}").format(t=self.table, w=where), None
        )
        return int(rows[0]["n"])


def _record(row: dict[str, Any]) -> ItemRecord:
    return ItemRecord(
        item_id=row["item_id"],
        version=row["version"],
        change_id=row["change_id"],
        content_hash=row["content_hash"],
        title=row["title"],
        categories=tuple(row["categories"]),
        description=row["description"],
        attributes=dict(row["attributes"] or {}),
        available=row["available"],
        deleted=row["deleted"],
        summary=row["summary"],
        themes=tuple(row["themes"]),
        mood=row["mood"],
        audience=row["audience"],
        tags=tuple(row["tags"]),
        raw_embedding=_as_array(row.get("raw_embedding")),
        enriched_embedding=_as_array(row.get("enriched_embedding")),
        embedding_model=row["embedding_model"],
        embedding_dim=row["embedding_dim"],
        prompt_version=row["prompt_version"],
        llm_model=row["llm_model"],
        enrichment_status=EnrichmentStatus(row["enrichment_status"]),
        enrichment_error=row["enrichment_error"],
        enriched_at=row["enriched_at"],
        occurred_at=row["occurred_at"],
        updated_at=row["updated_at"],
    )
