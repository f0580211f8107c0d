"""The serving ports over Postgres + pgvector (items, users' read model, CF tables)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Literal

import numpy as np

from recsys.cf.als import Fold
from recsys.cf.als_store import PgAls
from recsys.cf.pg_covisit import PgCovisitation
from recsys.cf.popularity import PgPopularity
from recsys.cf.profile import PgProfiles
from recsys.items.model import ItemFilters, ItemRecord
from recsys.items.store import ItemStore
from recsys.serving.ports import UserView
from recsys.serving.user_view import view_of
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


class PgUsers:
    """:class:`~recsys.serving.ports.UserReader` over the users worker's read model (and,
    with ``profiles``, the user's CF profile from ``user_events``)."""

    def __init__(
        self,
        states: PgUserStates,
        consumed_limit: int = 1000,
        profiles: PgProfiles | None = None,
    ) -> None:
        self.states = states
        self.consumed_limit = consumed_limit
        self.profiles = profiles

    async def view(self, user_id: str) -> UserView:
        state, consumed = await self.states.state_and_consumed(user_id, self.consumed_limit)
        view = view_of(user_id, state, consumed)
        if self.profiles is None or state is None:
            return view
        profile = await self.profiles.profile(user_id)
        return replace(view, cf_profile=tuple(profile))


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
        self, items: Sequence[str], n: int, exclude: Collection[str]
    ) -> list[tuple[str, float, str]]:
        return await self.covisit_store.neighbors(items, n, exclude)

    async def popular(self, n: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        return await self.popularity.top(n, exclude)

    async def model_version(self) -> str | None:
        return await self.als_store.active_version()
