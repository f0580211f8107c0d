"""The serve worker's item cache on the real Postgres and broker: a catalog larger than
the cache is served exactly as without a cache, and a ``catalog.enriched`` event makes
every serving process read the item from Postgres again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from recsys import db
from recsys.records import ItemEnriched, RecRequest
from recsys.serving.item_cache import ItemCache
from recsys.serving.query_embedding import QueryEncoder
from stack.embedded import EmbeddedBroker
from streams import admin
from streams.client import RecClient
from streams.producer import RecordProducer
from tests.helpers import await_until
from tests.integration.serving_support import world
from tests.integration.serving_world import World
from workers.bootstrap import Overrides, bootstrap
from workers.runtime import serve_forever
from workers.serve_wiring import build_recommender
from workers.serve_worker import ServeWorker

__all__ = ["world"]

pytestmark = pytest.mark.integration

ASKS = [
    {"user_id": "u-warm"},
    {"user_id": "u-warming"},
    {"user_id": "u-cold"},
    {"user_id": "u-new", "query": "a funny family comedy"},
    {"user_id": "u-warm", "query": "something with spaceships"},
]


async def test_a_catalog_larger_than_the_cache_is_served_as_without_one(
    world: World, embedder: Any
) -> None:
    pool = db.async_pool(world.dsn, min_size=1, max_size=4, name="cache-test")
    await pool.open(wait=True)
    encoder = QueryEncoder(embedder)
    cache = ItemCache(max_items=8)  # the world has 240 items
    try:
        plain = build_recommender(world.settings, pool, encoder, None, epsilon=0.0)
        cached = build_recommender(world.settings, pool, encoder, None, cache, epsilon=0.0)
        for _ in range(2):  # the second round reads through a full, evicting cache
            for ask in ASKS:
                request = RecRequest(deadline_ms=10_000, **ask)
                want = (await plain.recommend(request)).response.items
                got = (await cached.recommend(request)).response.items
                assert [(i.item_id, i.explanation) for i in got] == [
                    (i.item_id, i.explanation) for i in want
                ]
                assert not {i.item_id for i in got} & world.deleted
        assert len(cache.details.data) <= 8 and len(cache.vectors.data) <= 8
        assert cache.hits > 0 and cache.misses > 0
    finally:
        encoder.close()
        await pool.close()


async def test_catalog_enriched_invalidates_the_running_workers_cache(
    world: World, embedder: Any, broker: EmbeddedBroker
) -> None:
    settings = world.settings.with_overrides(
        bootstrap_servers=broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        # the follower fetches like the consumers nobody waits on (longer than the tests'
        # 20 ms, shorter than the 1 s default, to keep the test quick)
        background_fetch_wait_ms=500,
    )
    admin.ensure_topics(settings)
    ctx = bootstrap(settings, Overrides(embedder=embedder))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("serve", ctx, stop))
    pool = db.async_pool(world.dsn, min_size=1, max_size=1, name="cache-test-writer")
    await pool.open(wait=True)
    try:
        await await_until(lambda: ctx.handles.get(ServeWorker) is not None, 120, what="start")
        handle = ctx.handles.get(ServeWorker)
        assert handle is not None
        assert handle.invalidations.fetch_wait_ms == 500
        with RecClient(settings) as client:
            response = await client.arequest("u-warm", timeout_s=60, deadline_ms=5000)
        item = response.items[0].item_id
        assert item in handle.item_cache.details.data
        async with pool.connection() as conn:  # the enrich worker's write, then its event
            await conn.execute("UPDATE items SET title = 'Renamed' WHERE item_id = %s", (item,))
        items = handle.recommender.items
        assert (await items.details([item]))[item].title != "Renamed"  # cached until told
        with RecordProducer(settings) as producer:
            producer.send(
                producer.topics.catalog_enriched,
                item,
                ItemEnriched(item_id=item, version=2, change_id=f"{item}-2", content_hash="h"),
            )
        await await_until(
            lambda: item not in handle.item_cache.details.data, 30, what="the invalidation"
        )
        assert (await items.details([item]))[item].title == "Renamed"
        assert handle.invalidations.seen >= 1
    finally:
        async with pool.connection() as conn:
            title = world.items[item].title if "item" in locals() else None
            if title is not None:
                await conn.execute("UPDATE items SET title = %s WHERE item_id = %s", (title, item))
        await pool.close()
        stop.set()
        await asyncio.wait_for(task, 60)
