"""The ``enrich`` worker: catalog.changes → enriched, embedded items in pgvector.

Thin on purpose: decode (the consumer loop dead-letters what does not decode or
validate) → :meth:`recsys.enrichment.EnrichmentPipeline.process` → emit
``catalog.enriched`` for every applied write and one ``rec.llm-log`` record per LLM call
or decision not to call → flush → commit. Postgres being away is :class:`Retryable`:
the same batch is retried with backoff while the partitions are paused, so no offset
is ever committed past an item that is not in the table. LLM trouble never blocks the
partition: calls are bounded in concurrency and by a per-item deadline, and a failing
endpoint trips a breaker; items then go on with their raw text.

Tests and the demo pass ready-made parts through ``Context.overrides`` (a shared
embedder, an LLM client); the running pipeline and loop are published as an
:class:`EnrichWorker` handle.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from recsys.embedding import Embedder, SentenceTransformerEmbedder
from recsys.enrichment import Enricher, EnrichmentPipeline, PgEnrichmentCache, Taxonomy
from recsys.exceptions import DatabaseUnavailable
from recsys.items.backfill import VectorIndexes
from recsys.items.pgvector import PgItemStore
from recsys.llm.breaker import CircuitBreaker
from recsys.llm.client import LlmClient
from recsys.records import LlmInvolvement
from recsys.serving.catalog_scores import score_catalog
from streams.consumer_loop import ConsumerLoop, Inbound, Retryable
from streams.tracing import consume_span
from workers.bootstrap import Context
from workers.catalog_scoring import catalog_scorer
from workers.enrich_load import WriteMode, max_poll_interval_ms
from workers.metrics import observe_llm
from workers.model_load import load_model

__all__ = ["EnrichWorker", "run"]

log = logging.getLogger(__name__)


def _llm(ctx: Context) -> tuple[LlmClient | None, str]:
    """The LLM client for enrichment, or None and the reason it is off."""
    s = ctx.settings
    if ctx.overrides.llm_client is not None:
        return ctx.overrides.llm_client, "no_endpoint"
    if not s.llm_enabled:
        return None, "no_endpoint"
    if not s.llm_enrich:
        return None, "disabled"
    return LlmClient.from_settings(s.llm), "no_endpoint"


@dataclass(frozen=True)
class EnrichWorker:
    """What a running enrich worker exposes (tests, benchmarks)."""

    pipeline: EnrichmentPipeline
    loop: ConsumerLoop
    #: Online or backfilling (``STREAMREC_ENRICH_MODE``), and the switch between them.
    mode: WriteMode


async def run(ctx: Context, stop: asyncio.Event) -> None:
    """Consume catalog.changes until ``stop`` is set."""
    s, topics, producer = ctx.settings, ctx.topics, ctx.producer
    apool = await ctx.async_pool("enrich")
    embedder: Embedder = ctx.overrides.embedder or SentenceTransformerEmbedder(
        s.embedding_model, s.embedding_device, s.embedding_batch_size
    )
    client, off_reason = _llm(ctx)
    enricher = Enricher(
        client,
        PgEnrichmentCache(apool),
        Taxonomy.from_setting(s.tag_taxonomy),
        off_reason=off_reason,
        breaker=CircuitBreaker(s.llm_breaker_failures, s.llm_breaker_reset_s),
        prompt_style=s.prompt_style,
    )
    pipeline = EnrichmentPipeline(
        PgItemStore(apool, ef_search=s.hnsw_ef_search),
        embedder,
        enricher,
        batch_size=s.embedding_batch_size,
        batch_wait_s=s.embedding_batch_wait_ms / 1000,
        deadline_s=s.enrich_deadline_s,
    )
    if not await load_model(embedder, stop, worker="enrich"):
        log.info("enrich: stopped while the embedding model was loading")
        return
    await pipeline.check()
    indexes = VectorIndexes(apool, build_memory_mb=s.enrich_index_build_memory_mb)
    mode = WriteMode(indexes, s, topics.catalog_changes.name)
    await mode.start()
    log.info(
        "enrich: model %s, LLM %s, prompt %s",
        embedder.name,
        enricher.model or f"off ({off_reason})",
        enricher.prompt.version,
    )

    scorer = catalog_scorer(ctx, embedder, apool)

    def emit_log(record: LlmInvolvement) -> None:
        producer.send(topics.llm_log, record.request_id, record)
        observe_llm("enrich", record)

    async def handle(batch: list[Inbound[Any]]) -> None:
        mode.batch_seen()
        with consume_span(
            "catalog.changes enrich",
            batch[0].headers,
            {"messaging.batch.message_count": len(batch)},
        ):
            try:
                events = await pipeline.process([m.value for m in batch], emit_log)
            except DatabaseUnavailable as exc:
                raise Retryable(str(exc)) from exc
            for event in events:
                producer.send(topics.catalog_enriched, event.item_id, event)
            if scorer is not None and events:
                # after the events (serve processes' caches are invalidated without
                # waiting for this): a text not scored yet is scored by serving, once
                await score_catalog(scorer, [m.value for m in batch], events)

    loop = ConsumerLoop(
        s,
        worker="enrich",
        inputs=[topics.catalog_changes],
        handler=handle,
        producer=producer,
        max_batch=s.enrich_max_batch,
        # a backfill ends when the group is caught up (idle, lag 0); its index build runs
        # between two polls, so the group must keep the worker meanwhile
        housekeeping=mode.idle if mode.backfilling else None,
        consumer_overrides=(
            {"max.poll.interval.ms": max_poll_interval_ms(indexes.build_timeout_s)}
            if mode.backfilling
            else None
        ),
    )
    mode.group = loop.group_id
    ctx.handles.put(EnrichWorker(pipeline, loop, mode))
    try:
        await loop.run(stop)
    finally:
        if client is not None:
            await client.aclose()
