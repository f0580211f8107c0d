"""The serving ports over Postgres + pgvector (items, users' read model, CF tables)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Literal

import numpy as np

from recsys import db
from recsys.cf.als import Fold
from recsys.cf.als_store import PgAls
from recsys.cf.interactions import Interaction
from recsys.cf.pg_covisit import PgCovisitation
from recsys.cf.popularity import PgPopularity
from recsys.cf.profile import PgProfiles, user_profile
from recsys.items.model import ItemFilters, ItemRecord
from recsys.items.store import ItemStore
from recsys.serving.ports import UserView
from recsys.serving.user_view import view_of
from recsys.users.state import VISIT_EVENTS, UserState
from recsys.users.store import PgUserStates

__all__ = ["PgCf", "PgItems", "PgUsers"]


class PgItems:
    """:class:`~recsys.serving.ports.ItemSource` over the item store (pgvector, or the
    in-memory store of benchmarks and notebooks), in one vector space."""

    def __init__(self, store: ItemStore, space: Literal["raw", "enriched"] = "enriched") -> None:
        self.store = store
        self.space: Literal["raw", "enriched"] = space

    async def knn(
        self,
        vector: np.ndarray,
        k: int,
        *,
        filters: ItemFilters | None = None,
        exclude: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        return await self.store.knn(
            vector, k, space=self.space, filters=filters, exclude_ids=list(exclude)
        )

    async def eligible(self, item_ids: Sequence[str], filters: ItemFilters | None) -> set[str]:
        return await self.store.eligible_ids(list(item_ids), filters)

    async def nearest(
        self,
        vector: np.ndarray,
        k: int,
        *,
        filters: ItemFilters | None = None,
        exclude: Collection[str] = (),
        also: Sequence[str] = (),
    ) -> tuple[list[tuple[str, float]], dict[str, float]]:
        return await self.store.knn_and_similarities(
            vector,
            k,
            space=self.space,
            filters=filters,
            exclude_ids=list(exclude),
            item_ids=list(also),
        )

    async def eligible_each(
        self, item_ids: Sequence[str], filter_sets: Sequence[ItemFilters | None]
    ) -> list[set[str]]:
        return await self.store.eligible_ids_each(list(item_ids), filter_sets)

    async def count_eligible(self, filters: ItemFilters | None, exclude: Collection[str]) -> int:
        return await self.store.count_eligible(filters, list(exclude))

    async def similarities(
        self, vector: np.ndarray, item_ids: Sequence[str], filters: ItemFilters | None
    ) -> dict[str, float]:
        return await self.store.similarities(
            vector, list(item_ids), space=self.space, filters=filters
        )

    async def details(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        return {r.item_id: r for r in await self.store.get_many(list(dict.fromkeys(item_ids)))}

    async def vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return await self.store.vectors(list(dict.fromkeys(item_ids)), space=self.space)

    async def categories(self) -> list[str]:
        return await self.store.categories()


_CONSUMED_TYPES = sorted(t.value for t in VISIT_EVENTS)
#: :meth:`PgUserStates.state_and_consumed` and :meth:`PgProfiles.profile` in one round trip
_VIEW_SQL = (
    "SELECT (SELECT state::text FROM user_state WHERE user_id = %(u)s), "
    "ARRAY(SELECT item_id FROM user_events WHERE user_id = %(u)s "
    "AND item_id IS NOT NULL AND event_type = ANY(%(types)s) "
    "ORDER BY occurred_at DESC LIMIT %(limit)s), "
    "(SELECT json_agg(json_build_array(item_id, event_type, rating, "
    "extract(epoch FROM occurred_at)::float8) ORDER BY occurred_at DESC) FROM ("
    "SELECT item_id, event_type, rating, occurred_at FROM user_events "
    "WHERE user_id = %(u)s AND item_id IS NOT NULL "
    "ORDER BY occurred_at DESC LIMIT %(events)s) AS newest)"
)


class PgUsers:
    """:class:`~recsys.serving.ports.UserReader` over the users worker's read model (and,
    with ``profiles``, the user's CF profile from ``user_events``)."""

    def __init__(
        self,
        states: PgUserStates,
        consumed_limit: int = 1000,
        profiles: PgProfiles | None = None,
        acquire_timeout_s: float = 10.0,
    ) -> None:
        self.states = states
        self.consumed_limit = consumed_limit
        self.profiles = profiles
        self.acquire_timeout_s = acquire_timeout_s

    async def view(self, user_id: str) -> UserView:
        if self.profiles is None or self.profiles.limit <= 0:
            state, consumed = await self.states.state_and_consumed(user_id, self.consumed_limit)
            return view_of(user_id, state, consumed)
        # the state, the consumed items and the CF profile's events: one statement
        async with db.connection(self.states.pool, "user states", self.acquire_timeout_s) as conn:
            cur = await conn.execute(
                _VIEW_SQL,
                {
                    "u": user_id,
                    "types": _CONSUMED_TYPES,
                    "limit": self.consumed_limit,
                    "events": self.profiles.limit,
                },
            )
            row = await cur.fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        state = UserState.model_validate_json(row[0]) if row[0] is not None else None
        view = view_of(user_id, state, row[1] or ())
        if state is None:
            return view
        events = (
            Interaction(user_id, e[0], e[1], None if e[2] is None else float(e[2]), float(e[3]))
            for e in row[2] or ()
        )
        return replace(view, cf_profile=tuple(user_profile(events, self.profiles.weights)))


class PgCf:
    """:class:`~recsys.serving.ports.CfSource` over the ALS, co-visitation and popularity tables."""

    def __init__(self, als: PgAls, covisit: PgCovisitation, popularity: PgPopularity) -> None:
        self.als_store, self.covisit_store, self.popularity = als, covisit, popularity

    async def als(
        self,
        recent: Sequence[tuple[str, float]],
        n: int,
        exclude: Collection[str],
        fold: Fold = "least_squares",
    ) -> list[tuple[str, float]]:
        return await self.als_store.recommend(recent, n, exclude, fold)

    async def covisit(
        self, items: Sequence[str], n: int, exclude: Collection[str], *, shares: bool = False
    ) -> list[tuple[str, float, str]]:
        return await self.covisit_store.neighbors(items, n, exclude, shares=shares)

    async def popular(self, n: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        return await self.popularity.top(n, exclude)

    async def model_version(self) -> str | None:
        return await self.als_store.active_version()
