"""Put a :class:`~testkit.policy_world.PolicyWorld` into a database: a synthetic catalog
embedded into pgvector, and each simulated user's history (as many clicks as their
warmth bucket needs: 2 for cold, 12 for warming, 60 for warm; none for new users)
through the users worker's domain step, then ALS trained on them — so that serving
sees every simulated user in the bucket the world says."""

from __future__ import annotations

import random
from datetime import timedelta

from jobs.train_cf import TrainCfResult
from recsys.embedding import Embedder
from recsys.records import CatalogChange, EventType, UserEvent, WarmthBucket, utcnow
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from streams.settings import Settings
from testkit.policy_world import PolicyWorld
from testkit.synthetic_world import seed_world

__all__ = ["CLICKS", "history_events", "seed_policy_world"]

#: Clicks of a simulated user with history, per bucket (the default thresholds: ≤ 5
#: positives cold, ≥ 51 warm).
CLICKS = {WarmthBucket.COLD: 2, WarmthBucket.WARMING: 12, WarmthBucket.WARM: 60}


def history_events(world: PolicyWorld, catalog: list[CatalogChange]) -> list[UserEvent]:
    """Each user's history: distinct catalog items, clicked in the last hours."""
    rng = random.Random(world.seed)
    items = [c.item_id for c in catalog]
    start = utcnow() - timedelta(hours=2)
    out = []
    for user in world.users:
        if not user.has_history:
            continue
        for n, item in enumerate(rng.sample(items, CLICKS[user.bucket])):
            out.append(
                UserEvent(
                    event_id=f"{user.user_id}-h{n}",
                    user_id=user.user_id,
                    event_type=EventType.CLICK,
                    item_id=item,
                    session_id=f"{user.user_id}-s0",
                    occurred_at=start + timedelta(seconds=n),
                )
            )
    return sorted(out, key=lambda e: e.occurred_at)


async def seed_policy_world(
    settings: Settings, embedder: Embedder, world: PolicyWorld, n_items: int = 150
) -> TrainCfResult:
    """Catalog, histories and an ALS model for ``world`` in the settings' database."""
    catalog = SyntheticWorkload(
        WorkloadConfig(n_items=n_items, n_users=1, seed=world.seed)
    ).catalog()
    events = history_events(world, catalog)
    return await seed_world(settings, embedder, catalog, events, factors=16, iterations=8)
