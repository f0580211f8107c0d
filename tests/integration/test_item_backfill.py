"""Backfill mode: a catalog loaded into an empty store with no vector index, the HNSW
indexes built once at the end — through the functions of migrations/0102, with the same
versions, DLQ and commit guarantees as online, and a state any crash leaves finishable."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from recsys import db
from recsys.embedding import SentenceTransformerEmbedder
from recsys.exceptions import DatabaseError
from recsys.items.backfill import VECTOR_INDEXES, StoreMode, VectorIndexes
from recsys.items.pgvector import PgItemStore
from recsys.records import CatalogChange, ChangeOp
from streams.dlq import parse_dlq_headers
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from testkit.poison import poison_messages
from tests.helpers import await_until, read_topic
from tests.integration.enrich_harness import (
    caught_up,
    committed_total,
    end_total,
    enrich_worker,
    publish,
    rows,
)
from workers.enrich_worker import EnrichWorker


def index_definitions(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'items' "
            "AND indexname = ANY(%s)",
            (list(VECTOR_INDEXES),),
        ).fetchall()
    return dict(found)


def stored_mode(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT mode FROM item_store_mode").fetchone()
    assert row is not None
    return str(row[0])


def film(i: int, version: int = 1, **changes: Any) -> CatalogChange:
    return CatalogChange(
        item_id=f"b{i:03d}",
        version=version,
        change_id=f"b{i:03d}-{version}",
        title=f"Film number {i}",
        categories=["Drama"] if i % 2 else ["Comedy"],
        description=f"A story told {i} times, version {version}.",
        **changes,
    )


async def test_the_functions_drop_and_rebuild_exactly_the_migrated_indexes(database: str) -> None:
    migrated = index_definitions(database)
    assert set(migrated) == set(VECTOR_INDEXES)
    apool = db.async_pool(database, max_size=2)
    await apool.open(wait=True)
    try:
        indexes = VectorIndexes(apool, build_memory_mb=64)
        assert await indexes.mode() is StoreMode.ONLINE
        assert await indexes.begin_backfill()
        assert await indexes.mode() is StoreMode.BACKFILL and await indexes.present() == []
        assert await indexes.begin_backfill()  # an interrupted backfill resumes
        assert await indexes.finish_backfill()
        assert index_definitions(database) == migrated  # the same indexes, not look-alikes
        assert await indexes.mode() is StoreMode.ONLINE
        assert not await indexes.finish_backfill()  # online already: nothing to finish

        # a store that holds items never drops its indexes
        async with apool.connection() as conn:
            await conn.execute(
                "INSERT INTO items (item_id, version, change_id, content_hash, "
                "enrichment_status) VALUES ('x', 1, 'x-1', '', 'LLM_OFF')"
            )
        assert not await indexes.begin_backfill()
        assert await indexes.mode() is StoreMode.ONLINE
        assert index_definitions(database) == migrated
    finally:
        await apool.close()


async def test_a_build_killed_midway_leaves_backfill_mode_for_the_next_start(
    database: str,
) -> None:
    apool = db.async_pool(database, max_size=3)
    await apool.open(wait=True)
    try:
        indexes = VectorIndexes(apool, build_memory_mb=64)
        assert await indexes.begin_backfill()
        async with apool.connection() as conn:  # enough rows for the build to take a moment
            await conn.execute(
                "INSERT INTO items (item_id, version, change_id, content_hash, "
                "enrichment_status, raw_embedding, enriched_embedding, embedding_model) "
                "SELECT 'i' || g, 1, 'c' || g, '', 'LLM_OFF', v, v, 'm' FROM ("
                "  SELECT g, array_agg(random())::real[]::vector(384) AS v"
                "  FROM generate_series(1, 6000) g, generate_series(1, 384) d GROUP BY g) s"
            )
        build = asyncio.create_task(indexes.finish_backfill())

        def building() -> bool:
            with psycopg.connect(database) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE query LIKE 'SELECT items_finish_backfill()%'"
                ).fetchone()
            return bool(row and row[0])

        await await_until(lambda: building() or build.done(), 30, what="the build to start")
        assert not build.done(), "the build finished before it could be killed"
        with psycopg.connect(database, autocommit=True) as conn:  # the worker "dies"
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'SELECT items_finish_backfill()%'"
            )
        with pytest.raises(DatabaseError):
            await build
        # rolled back as a whole: still in backfill, no half-built index
        assert stored_mode(database) == "backfill" and index_definitions(database) == {}
        assert await indexes.finish_backfill()  # the next start finishes it
        assert set(index_definitions(database)) == set(VECTOR_INDEXES)
        assert stored_mode(database) == "online"
    finally:
        await apool.close()


async def test_the_worker_backfills_with_versions_and_dlq_then_builds_and_goes_online(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    s = settings.with_overrides(enrich_mode="backfill", embedding_batch_wait_ms=50)
    dsn = s.database_url.get_secret_value()  # type: ignore[union-attr]
    # the catalog is in the topic before the worker starts: 30 items, one of them in two
    # versions (newest wins whatever the order), one deleted, plus poison
    catalog = [film(i) for i in range(30)]
    publish(s, *catalog[:15], film(3, version=2), film(3, version=1), *catalog[15:])
    publish(s, CatalogChange(item_id="b007", version=2, change_id="b007-2", op=ChangeOp.DELETE))
    spec = Topics(s).catalog_changes
    with RecordProducer(s) as producer:
        poison = poison_messages(spec, producer.serde)
        for payload in poison.values():
            producer.send_raw(spec, "poison", payload)
    async with enrich_worker(s, embedder) as ctx:
        handle = ctx.handles.require(EnrichWorker)
        assert handle.mode.backfilling
        assert index_definitions(dsn) == {}  # loading with no vector index
        await await_until(lambda: not handle.mode.backfilling, 120, what="the backfill to finish")
        assert set(index_definitions(dsn)) == set(VECTOR_INDEXES)
        assert stored_mode(dsn) == "online" and handle.mode.build_s is not None
        assert committed_total(s) == end_total(s)
        table = rows(s)
        assert len(table) == 30
        assert table["b003"]["version"] == 2 and "version 2" in table["b003"]["description"]
        assert table["b007"]["deleted"] and table["b007"]["version"] == 2
        assert all(r["raw_embedding"] is not None for r in table.values() if not r["deleted"])
        assert spec.dlq is not None
        dead = read_topic(s, spec.dlq.name, len(poison), 30)
        letters = [parse_dlq_headers(m.headers()) for m in dead]
        assert sorted(d.reason for d in letters) == sorted(poison)

        # online from now on: a new item is searchable through the built index at once
        publish(s, film(99))
        await caught_up(s)
        row = rows(s)["b099"]
        apool = db.async_pool(dsn)
        await apool.open(wait=True)
        try:
            top = await PgItemStore(apool).knn(row["raw_embedding"], 1, space="raw")
            assert top[0][0] == "b099"
        finally:
            await apool.close()


async def test_a_worker_stopped_mid_backfill_is_finished_by_an_online_start(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    s = settings.with_overrides(enrich_mode="backfill", embedding_batch_wait_ms=50)
    dsn = s.database_url.get_secret_value()  # type: ignore[union-attr]
    publish(s, *[film(i) for i in range(40)])
    async with enrich_worker(s, embedder) as ctx:
        handle = ctx.handles.require(EnrichWorker)
        await await_until(
            lambda: handle.pipeline.stats.written > 0, 90, what="the first rows to land"
        )
        # it finishes only after a second of idling: stopped here, it is still loading
        assert handle.mode.backfilling
    # what a crash mid-load leaves too: rows of the committed batches, no vector index,
    # the stored mode still backfill
    assert 0 < committed_total(s) <= len(rows(s))
    assert index_definitions(dsn) == {} and stored_mode(dsn) == "backfill"
    online = s.with_overrides(enrich_mode="online")
    async with enrich_worker(online, embedder) as ctx:
        handle = ctx.handles.require(EnrichWorker)
        assert not handle.mode.backfilling
        assert set(index_definitions(dsn)) == set(VECTOR_INDEXES)  # built before consuming
        assert stored_mode(dsn) == "online"
        await caught_up(online)
        table = rows(online)
        assert sorted(table) == [f"b{i:03d}" for i in range(40)]
        assert {r["version"] for r in table.values()} == {1}
