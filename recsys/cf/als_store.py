"""ALS models in Postgres + pgvector: versions, activation, request-time recommend.

``migrations/0210_als.sql``: one ``als_models`` row per trained version (parameters,
data window, counts, metrics, ``YᵀY``, ``active``) and its item factors in
``als_item_factors``. A version is written whole in one transaction (inactive), then
activated in another; at most one version is active (a unique partial index), and
switching is one transaction, so readers see the old or the new version, never none.
Older inactive versions beyond ``keep`` are pruned after activation.

pgvector indexes need a fixed dimension, so the factor count is one of
:data:`SUPPORTED_FACTORS`, each with its own partial HNSW inner-product index over
``factor::vector(n)``; queries cast the same way and filter by version with pgvector's
iterative scan (several versions share an index).

:meth:`PgAls.recommend` folds the user in from (item, weight) pairs (only the factors
of those items and the stored ``YᵀY`` are read) and asks the index for the items with
the largest inner product. The active version and its parameters are cached for
``cache_s`` seconds.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from recsys import db
from recsys.cf.als import AlsModel, AlsParams, Fold, aggregate_recent, fold_user
from recsys.exceptions import ConfigurationError

__all__ = ["SUPPORTED_FACTORS", "ModelInfo", "PgAls", "TrainingRun", "new_version"]

#: Factor counts with an HNSW index (``migrations/0210_als.sql``).
SUPPORTED_FACTORS = (16, 32, 64, 128, 256)
_MAX_EF_SEARCH = 1000


def new_version(now: datetime | None = None) -> str:
    """``als-20261202T013000Z-3f9a1c``: sorts by time, unique across concurrent runs."""
    now = now or datetime.now(UTC)
    return f"als-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def check_factors(factors: int) -> None:
    """Refuse a factor count that has no index."""
    if factors not in SUPPORTED_FACTORS:
        raise ConfigurationError(
            f"factors must be one of {', '.join(map(str, SUPPORTED_FACTORS))} "
            f"(pgvector indexes need a fixed dimension), got {factors}"
        )


@dataclass(frozen=True)
class TrainingRun:
    """What a version was trained on and how it went (the ``als_models`` row)."""

    source: str
    n_events: int
    n_users: int
    n_items: int
    n_interactions: int
    window_since: datetime | None = None
    window_until: datetime | None = None
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    weights: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    """A stored version's serving parameters."""

    version: str
    factors: int
    regularization: float
    alpha: float
    weight_cap: float
    gramian: np.ndarray
    active: bool
    trained_at: datetime
    n_items: int


def _info(row: Sequence[Any]) -> ModelInfo:
    version, factors, params, gramian, active, trained_at, n_items = row
    f = int(factors)
    return ModelInfo(
        version=version,
        factors=f,
        regularization=float(params["regularization"]),
        alpha=float(params["alpha"]),
        weight_cap=float(params.get("weights", {}).get("cap", 20.0)),
        gramian=np.asarray(gramian, dtype=np.float64).reshape(f, f),
        active=bool(active),
        trained_at=trained_at,
        n_items=int(n_items),
    )


_INFO_COLUMNS = "version, factors, params, gramian, active, trained_at, n_items"


class PgAls:
    """ALS versions and their item factors in Postgres; serving-time recommend."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        cache_s: float = 5.0,
        ef_search: int = 100,
        acquire_timeout_s: float = 10.0,
        factor_cache: int = 0,
        session_ef_search: int | None = None,
    ) -> None:
        self.pool = pool
        self.cache_s = cache_s
        self.ef_search = ef_search
        self.acquire_timeout_s = acquire_timeout_s
        #: ``hnsw.ef_search`` the pool's connections already carry, with
        #: ``hnsw.iterative_scan = relaxed_order`` (:func:`recsys.db.async_pool`): a search
        #: at that ef on an autocommit connection needs no settings of its own
        self.session_ef_search = session_ef_search
        self._active: tuple[float, ModelInfo | None] | None = None
        self._infos: dict[str, ModelInfo] = {}
        #: item factors per (version, item), least recently used evicted beyond
        #: ``factor_cache`` entries: a version's factors never change once written
        self.factor_cache = factor_cache
        self._factors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return db.connection(self.pool, "ALS store", self.acquire_timeout_s)

    @property
    def cached_factors(self) -> dict[str, int]:
        """Item factors held in the cache, per version (observability, tests)."""
        counts: dict[str, int] = {}
        for version, _ in self._factors:
            counts[version] = counts.get(version, 0) + 1
        return counts

    # ---- writing ------------------------------------------------------------------------
    async def write(
        self,
        model: AlsModel,
        run: TrainingRun,
        *,
        version: str | None = None,
        on_rows: Callable[[int], None] | None = None,
        chunk: int = 2000,
    ) -> str:
        """Store a trained model as a new, inactive version; return the version.

        ``on_rows(n)`` is called after every ``chunk`` factor rows (progress).
        """
        check_factors(model.factors)
        version = version or new_version()
        params = model.params.as_dict() | {"weights": run.weights or {"cap": model.weight_cap}}
        metrics = dict(run.metrics)
        if model.loss is not None:
            metrics.setdefault("loss", model.loss)
        dims = model.factors
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = 0")
            await conn.execute(
                "INSERT INTO als_models (version, factors, params, gramian, source, "
                "window_since, window_until, first_event_at, last_event_at, n_events, "
                "n_users, n_items, n_interactions, metrics) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    version,
                    dims,
                    Jsonb(params),
                    model.gramian.astype(np.float32).ravel().tolist(),
                    run.source,
                    run.window_since,
                    run.window_until,
                    run.first_event_at,
                    run.last_event_at,
                    run.n_events,
                    run.n_users,
                    run.n_items,
                    run.n_interactions,
                    Jsonb(metrics),
                ),
            )
            async with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY als_item_factors (version, item_id, dims, factor) "
                    "FROM STDIN WITH (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["text", "text", "int2", "vector"])
                for start in range(0, len(model.item_ids), chunk):
                    ids = model.item_ids[start : start + chunk]
                    for offset, item_id in enumerate(ids):
                        await copy.write_row(
                            (version, item_id, dims, model.item_factors[start + offset])
                        )
                    if on_rows is not None:
                        on_rows(len(ids))
        return version

    async def activate(self, version: str) -> None:
        """Make ``version`` the only active one (atomically)."""
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT version FROM als_models WHERE version = %s FOR UPDATE", (version,)
            )
            if await cur.fetchone() is None:
                raise ConfigurationError(f"no ALS model version {version!r}")
            await conn.execute(
                "UPDATE als_models SET active = false, activated_at = NULL WHERE active"
            )
            await conn.execute(
                "UPDATE als_models SET active = true, activated_at = now() WHERE version = %s",
                (version,),
            )
        self._active = None

    async def prune(self, keep: int) -> list[str]:
        """Delete the inactive versions older than the newest ``keep``; return them."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = 0")
            cur = await conn.execute(
                "DELETE FROM als_models WHERE NOT active AND version NOT IN ("
                " SELECT version FROM als_models ORDER BY trained_at DESC, version DESC"
                " LIMIT %s) RETURNING version",
                (max(keep, 1),),
            )
            gone = [r[0] for r in await cur.fetchall()]
        for v in gone:
            self._infos.pop(v, None)
        return gone

    # ---- reading ------------------------------------------------------------------------
    async def versions(self) -> list[dict[str, Any]]:
        """Every stored version, newest first (what `train-cf --list` prints)."""
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT version, trained_at, active, factors, params, source, n_events, "
                "n_users, n_items, n_interactions, metrics FROM als_models "
                "ORDER BY trained_at DESC, version DESC"
            )
            cols = [d.name for d in cur.description or []]
            return [dict(zip(cols, row, strict=True)) for row in await cur.fetchall()]

    async def info(self, version: str) -> ModelInfo | None:
        """A version's serving parameters (cached: versions never change)."""
        if version in self._infos:
            return self._infos[version]
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT {_INFO_COLUMNS} FROM als_models WHERE version = %s", (version,)
            )
            row = await cur.fetchone()
        if row is None:
            return None
        info = _info(row)
        self._infos[version] = info
        return info

    async def _active_info(self) -> ModelInfo | None:
        now = time.monotonic()
        if self._active is not None and now - self._active[0] < self.cache_s:
            return self._active[1]
        async with self._conn() as conn:
            cur = await conn.execute("SELECT version FROM als_models WHERE active")
            row = await cur.fetchone()
        info = await self.info(row[0]) if row else None
        self._active = (now, info)
        return info

    async def active_version(self) -> str | None:
        """The active version (cached for ``cache_s`` seconds), None before any training."""
        info = await self._active_info()
        return info.version if info else None

    async def factors_of(self, version: str, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Item factors of one version (unknown items are absent)."""
        if not item_ids:
            return {}
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT item_id, factor FROM als_item_factors "
                "WHERE version = %s AND item_id = ANY(%s)",
                (version, list(item_ids)),
            )
            rows = await cur.fetchall()
        return {r[0]: np.asarray(r[1].to_numpy(), dtype=np.float32) for r in rows}

    async def recommend(
        self,
        recent_items: Sequence[tuple[str, float]],
        n: int,
        exclude: Collection[str] = (),
        fold: Fold = "least_squares",
    ) -> list[tuple[str, float]]:
        """Top ``n`` (item, inner-product score) of the active version for a user whose
        recent (item, weight) pairs are given; never a recent or excluded item.
        ``fold``: how the user vector is made (:data:`recsys.cf.als.Fold`).

        Empty when no version is active or none of the recent items is in it.
        """
        info = await self._active_info()
        if info is None or n <= 0:
            return []
        totals = aggregate_recent(recent_items, info.weight_cap)
        if not totals:
            return []
        skip = sorted({i for i, _ in recent_items} | set(exclude))
        ef = min(max(self.ef_search, n), _MAX_EF_SEARCH)
        async with self._conn() as conn:
            # the recent items' factors (from the cache where it has them), then the
            # search with its settings (pipelined: one round trip)
            factors = await self._factors_for(conn, info.version, list(totals))
            known = [(i, factors[i]) for i in totals if i in factors]
            if not known:
                return []
            vector = fold_user(
                np.stack([f for _, f in known]).astype(np.float32),
                np.array([totals[i] for i, _ in known]),
                info.gramian,
                info.regularization,
                info.alpha,
                fold,
            )
            params = {"v": vector, "version": info.version, "skip": skip, "n": n}
            if ef == self.session_ef_search and conn.autocommit:
                cur = await conn.execute(self._nearest_sql(info.factors), params)
                rows = await cur.fetchall()
            else:
                # pipelined: the settings and the search share one implicit transaction
                async with conn.pipeline():
                    await conn.execute(
                        "SELECT set_config('hnsw.ef_search', %s, true), "
                        "set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                        (str(ef),),
                    )
                    cur = await conn.execute(self._nearest_sql(info.factors), params)
                    rows = await cur.fetchall()
        return [(r[0], float(r[1])) for r in rows]

    async def _factors_for(
        self, conn: psycopg.AsyncConnection[Any], version: str, item_ids: list[str]
    ) -> dict[str, np.ndarray]:
        """Factors of ``item_ids`` in ``version``: cached ones, the rest in one read."""
        out: dict[str, np.ndarray] = {}
        missing = []
        for item_id in item_ids:
            hit = self._factors.get((version, item_id)) if self.factor_cache else None
            if hit is None:
                missing.append(item_id)
            else:
                self._factors.move_to_end((version, item_id))
                out[item_id] = hit
        if missing:
            cur = await conn.execute(
                "SELECT item_id, factor FROM als_item_factors "
                "WHERE version = %s AND item_id = ANY(%s)",
                (version, missing),
            )
            for item_id, factor in await cur.fetchall():
                vec = np.asarray(factor.to_numpy(), dtype=np.float32)
                out[item_id] = vec
                if self.factor_cache:
                    self._factors[(version, item_id)] = vec
            while len(self._factors) > self.factor_cache:
                self._factors.popitem(last=False)
        return out

    @staticmethod
    def _nearest_sql(factors: int) -> sql.Composed:
        cast = sql.SQL("vector({})").format(sql.Literal(factors))
        return sql.SQL(
            "WITH nearest AS MATERIALIZED ("
            " SELECT item_id, factor::{cast} <#> %(v)s::{cast} AS distance"
            " FROM als_item_factors"
            " WHERE dims = {dims} AND version = %(version)s AND item_id <> ALL(%(skip)s)"
            " ORDER BY distance LIMIT %(n)s"
            ") SELECT item_id, -distance FROM nearest ORDER BY distance + 0, item_id"
        ).format(cast=cast, dims=sql.Literal(factors))

    async def load(self, version: str) -> AlsModel:
        """A stored version as an offline :class:`AlsModel` (item factors only)."""
        info = await self.info(version)
        if info is None:
            raise ConfigurationError(f"no ALS model version {version!r}")
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT item_id, factor FROM als_item_factors WHERE version = %s ORDER BY item_id",
                (version,),
            )
            rows = await cur.fetchall()
            pcur = await conn.execute(
                "SELECT params FROM als_models WHERE version = %s", (version,)
            )
            prow = await pcur.fetchone()
        params = dict(prow[0]) if prow else {}
        params.pop("weights", None)
        return AlsModel(
            item_ids=[r[0] for r in rows],
            item_factors=np.stack([np.asarray(r[1].to_numpy(), dtype=np.float32) for r in rows]),
            params=AlsParams(**params),
            gramian=info.gramian,
            weight_cap=info.weight_cap,
        )
