"""Nearline enrichment throughput: catalog.changes → enrich worker → pgvector, LLM off,
beside the yardstick of the same embedding model encoding the same texts in the same run.

    python -m benchmarks enrich [--items 2000] [--source synthetic|movielens]

The worker runs in-process on an embedded broker and Postgres of its own (fresh topics,
a migrated database). One warm-up item first (group join, model load); then the clock
runs from publishing the first of ``--items`` changes to the last one being in the
table. The yardstick — ``encode`` on the same raw texts with the same batch size — is
measured before and after the pipeline and averaged, since the machine is shared.

Last line: ``items_per_s``, ``raw_encode_items_per_s``, ``ratio_to_raw_encode`` (target
≥ 0.8), plus the details.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import psycopg

from benchmarks.common import embedded_stack, emit
from recsys import db
from recsys.embedding import SentenceTransformerEmbedder
from recsys.enrichment import raw_text
from recsys.movielens import MovieLens
from recsys.records import CatalogChange
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from streams import admin
from streams.producer import RecordProducer
from streams.settings import Settings
from workers.bootstrap import Overrides, bootstrap
from workers.enrich_worker import EnrichWorker
from workers.runtime import serve_forever


def catalog(source: str, n: int, movielens_path: str | None) -> list[CatalogChange]:
    if source == "movielens":
        settings = Settings()
        path = movielens_path or str(settings.movielens_path)
        return MovieLens(path).catalog()[:n]  # type: ignore[arg-type]
    return SyntheticWorkload(WorkloadConfig(n_items=n, n_users=1)).catalog()


def encode_rate(embedder: SentenceTransformerEmbedder, texts: list[str]) -> float:
    start = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - start)


def count_items(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM items WHERE raw_embedding IS NOT NULL").fetchone()
    return int(row[0]) if row else 0


async def pipeline_rate(
    settings: Settings, embedder: SentenceTransformerEmbedder, changes: list[CatalogChange]
) -> dict[str, Any]:
    assert settings.database_url is not None
    dsn = settings.database_url.get_secret_value()
    ctx = bootstrap(settings, Overrides(embedder=embedder))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("enrich", ctx, stop))
    try:
        warm = CatalogChange(item_id="warm-up", version=1, title="Warm-up", description="Warm.")
        with RecordProducer(settings) as producer:
            producer.publish_catalog_change(warm)
        while count_items(dsn) < 1:
            if task.done():
                task.result()
            await asyncio.sleep(0.1)
        start = time.perf_counter()
        with RecordProducer(settings) as producer:
            for change in changes:
                producer.publish_catalog_change(change)
        published = time.perf_counter() - start
        while count_items(dsn) < len(changes) + 1:
            if task.done():
                task.result()
            if time.perf_counter() - start > 1800:
                raise TimeoutError("the worker did not catch up within 30 minutes")
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - start
        handle = ctx.handles.require(EnrichWorker)
        pipeline, loop = handle.pipeline, handle.loop
        sizes = pipeline.batcher.batch_sizes
        return {
            "items_per_s": len(changes) / elapsed,
            "elapsed_s": round(elapsed, 2),
            "publish_s": round(published, 2),
            "consumer_batches": loop.stats.batches,
            "embedding_batches": len(sizes),
            "mean_embedding_batch": round(sum(sizes) / max(1, len(sizes)), 1),
            "embedding_busy_s": round(pipeline.batcher.busy_s, 2),
            "write_busy_s": round(pipeline.stats.write_s, 2),
        }
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--source", choices=["synthetic", "movielens"], default="synthetic")
    parser.add_argument("--movielens-path", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    changes = catalog(args.source, args.items, args.movielens_path)
    texts = [raw_text(c.title, c.categories, c.description) for c in changes]
    with embedded_stack(
        with_postgres=True,
        embedding_batch_size=args.batch_size,
        catalog_partitions=2,
        log_partitions=1,
        batch_fetch_wait_ms=100,
    ) as settings:
        assert settings.database_url is not None
        db.apply_migrations(settings.database_url.get_secret_value())
        admin.ensure_topics(settings)
        embedder = SentenceTransformerEmbedder(
            settings.embedding_model, settings.embedding_device, settings.embedding_batch_size
        )
        embedder.embed(texts[:64])  # load and warm the model
        before = encode_rate(embedder, texts)
        result = asyncio.run(pipeline_rate(settings, embedder, changes))
        after = encode_rate(embedder, texts)
    raw = (before + after) / 2
    emit(
        {
            "benchmark": "enrich",
            "source": args.source,
            "items": len(changes),
            "llm": "off",
            "embedding_model": embedder.name,
            "embedding_batch_size": args.batch_size,
            "items_per_s": round(result.pop("items_per_s"), 1),
            "raw_encode_items_per_s": round(raw, 1),
            "raw_encode_before_after": [round(before, 1), round(after, 1)],
            "ratio_to_raw_encode": round(
                len(changes) / result["elapsed_s"] / raw if result["elapsed_s"] else 0.0, 3
            ),
            "target_ratio": 0.8,
            **result,
        }
    )


if __name__ == "__main__":
    main()
