"""Seed a database with a synthetic world without Kafka: items embedded into pgvector,
users' histories into the read model, ``user_events`` and co-visitation, and a trained
ALS version — the same domain steps the workers run, for benchmarks and tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from jobs.train_cf import TrainCfOptions, TrainCfResult, run_train_cf
from recsys import db
from recsys.cf.covisit import CovisitConfig
from recsys.cf.pg_covisit import PgCovisitation
from recsys.embedding import Embedder
from recsys.enrichment import Enricher, EnrichmentPipeline, InMemoryEnrichmentCache
from recsys.items.pgvector import PgItemStore
from recsys.records import CatalogChange, UserEvent
from recsys.serving.catalog_scores import score_catalog
from recsys.textsafety.instruction import InstructionScorer
from recsys.textsafety.margins import PgInstructionMargins
from recsys.users.nearline import update_batch
from recsys.users.state import UserState, UserStateConfig
from recsys.users.store import PgUserStates
from streams.settings import Settings

__all__ = ["seed_world", "write_events"]


async def seed_world(
    settings: Settings,
    embedder: Embedder,
    catalog: Sequence[CatalogChange],
    events: Sequence[UserEvent],
    *,
    factors: int = 32,
    iterations: int = 10,
    score_text: bool = False,
) -> TrainCfResult:
    """Write ``catalog`` and ``events`` into the settings' database and train ALS on them.

    ``score_text``: also score the items' text for instruction-likeness into
    ``instruction_margins``, as the enrich worker does when the LLM is on.
    """
    assert settings.database_url is not None, "seed_world needs a database"
    dsn = settings.database_url.get_secret_value()
    pool = db.async_pool(dsn, min_size=1, max_size=4, name="seed-world")
    await pool.open(wait=True)
    try:
        store = PgItemStore(pool)
        pipeline = EnrichmentPipeline(
            store, embedder, Enricher(None, InMemoryEnrichmentCache()), batch_size=64
        )
        written = await pipeline.process(list(catalog), lambda _: None)
        if score_text:
            scorer = InstructionScorer(
                lambda texts: asyncio.to_thread(embedder.embed, texts),
                model=embedder.name,
                store=PgInstructionMargins(pool),
                chunk=64,
            )
            await score_catalog(scorer, list(catalog), written)
        await write_events(pool, settings, events)
    finally:
        await pool.close()
    return await run_train_cf(settings, TrainCfOptions(factors=factors, iterations=iterations), dsn)


async def write_events(
    pool: AsyncConnectionPool,
    settings: Settings,
    events: Sequence[UserEvent],
    *,
    covisit: bool = True,
) -> None:
    """The users worker's domain step over ``events``, in its batch size, states carried
    from batch to batch (``covisit=False`` leaves co-visitation alone)."""
    states: dict[str, UserState] = {}
    state_cfg = UserStateConfig.from_settings(settings.users)
    covisit_cfg = CovisitConfig.from_settings(settings.users)
    users = PgUserStates(pool)
    size = settings.users_batch_size
    for start in range(0, len(events), size):
        update = update_batch(
            states.get, [(e, None) for e in events[start : start + size]], state_cfg, covisit_cfg
        )
        states.update(update.states)
        await users.write(
            update.accepted, update.states.values(), PgCovisitation(pool) if covisit else None
        )
