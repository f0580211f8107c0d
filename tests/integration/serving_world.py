"""A small but real world for serving tests, built once per module in its own database.

240 synthetic items go through the enrichment pipeline (LLM off, the real embedder)
into pgvector; 40 synthetic users' histories plus four scripted users go through the
users worker's domain step into the read model, ``user_events`` and co-visitation; ALS
is trained by ``train-cf``'s own function; a few items are deleted afterwards.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from recsys import db
from recsys.items import Tombstone
from recsys.items.pgvector import PgItemStore
from recsys.records import CatalogChange, EventType, UserEvent, utcnow
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from streams.settings import Settings
from testkit.synthetic_world import seed_world

__all__ = ["SCRIPTED", "World", "build_world"]

#: Scripted users: (user id, category they click, number of clicks).
SCRIPTED = {
    "warm": ("u-warm", "comedy", 60),
    "warming": ("u-warming", "drama", 12),
    "cold": ("u-cold", "sci-fi", 2),
}
NEW_USER = "u-new"


@dataclass
class World:
    settings: Settings
    dsn: str
    items: dict[str, CatalogChange]
    by_category: dict[str, list[str]]
    deleted: set[str] = field(default_factory=set)
    clicked: dict[str, set[str]] = field(default_factory=dict)
    events: list[UserEvent] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def user(self, name: str) -> str:
        return NEW_USER if name == "new" else SCRIPTED[name][0]


def _scripted_events(by_category: dict[str, list[str]]) -> list[UserEvent]:
    start = utcnow() - timedelta(minutes=30)
    out = []
    for user, category, clicks in SCRIPTED.values():
        items = itertools.cycle(by_category[category][:12])  # the rest stays unseen
        for n in range(clicks):
            out.append(
                UserEvent(
                    event_id=f"{user}-{n}",
                    user_id=user,
                    event_type=EventType.CLICK,
                    item_id=next(items),
                    session_id=f"{user}-s1",
                    occurred_at=start + timedelta(seconds=10 * n),
                )
            )
    return out


async def build_world(settings: Settings, embedder: Any) -> World:
    """Fill the settings' database; return what the tests need to know about it."""
    assert settings.database_url is not None
    dsn = settings.database_url.get_secret_value()
    workload = SyntheticWorkload(WorkloadConfig(n_items=240, n_users=40, seed=11))
    catalog = workload.catalog()
    items = {c.item_id: c for c in catalog}
    by_category: dict[str, list[str]] = {}
    for change in sorted(catalog, key=lambda c: c.item_id):
        for category in change.categories:
            by_category.setdefault(category, []).append(change.item_id)
    events = [*workload.events(), *_scripted_events(by_category)]
    await seed_world(settings, embedder, catalog, events, factors=16, iterations=10)
    world = World(settings, dsn, items, by_category, events=events)
    for e in events:
        if e.item_id is not None:
            world.clicked.setdefault(e.user_id, set()).add(e.item_id)
    # delete two comedy items nobody scripted has seen, and one the warm user saw
    warm_seen = world.clicked[SCRIPTED["warm"][0]]
    unseen = [i for i in by_category["comedy"] if i not in warm_seen][:2]
    doomed = [*unseen, sorted(warm_seen)[0]]
    pool = db.async_pool(dsn, min_size=1, max_size=2, name="world")
    await pool.open(wait=True)
    try:
        await PgItemStore(pool).apply([Tombstone(i, 99, f"{i}-delete") for i in doomed])
    finally:
        await pool.close()
    world.deleted = set(doomed)
    return world
