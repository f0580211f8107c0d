"""Fixtures and helpers shared by the serving tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from recsys import db
from recsys.llm.client import LlmClient
from recsys.records import RecRequest
from recsys.serving.query_embedding import QueryEncoder
from recsys.serving.recommender import LlmParts, Recommender, Served
from tests.conftest import make_settings
from tests.integration.serving_world import World, build_world
from workers.serve_wiring import build_recommender, llm_parts

__all__ = ["ask", "serving", "world"]


@pytest.fixture(scope="module")
def world(module_database: str, embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The module's serving world (built once: embeddings and ALS take seconds)."""
    settings = make_settings(tmp_path_factory.mktemp("serving"), database_url=module_database)
    return asyncio.run(build_world(settings, embedder))


@asynccontextmanager
async def serving(
    world: World,
    embedder: Any,
    *,
    llm_url: str | None = None,
    parts: LlmParts | None = None,
    settings_overrides: dict[str, Any] | None = None,
    wait_for_scores: bool = False,
    **policy: Any,
) -> AsyncIterator[Recommender]:
    """A recommender over the world's database; exploration off unless asked for.

    ``wait_for_scores``: requests wait for the instruction scores of new text (else the
    settings' budget applies, as in production).
    """
    settings = world.settings.with_overrides(**(settings_overrides or {}))
    pool = db.async_pool(world.dsn, min_size=1, max_size=4, name="serving-test")
    await pool.open(wait=True)
    client = None
    if llm_url is not None:
        client = LlmClient(base_url=llm_url, model="simulated-test", max_retries=0, timeout_s=2.0)
    encoder = QueryEncoder(embedder)
    try:
        policy.setdefault("epsilon", 0.0)
        rec = build_recommender(
            settings, pool, encoder, client, wait_for_scores=wait_for_scores, **policy
        )
        if parts is not None:
            rec.llm = parts
        elif client is not None:
            rec.llm = llm_parts(settings, client, encoder, wait_for_scores=wait_for_scores)
        await rec.warm()
        try:
            yield rec
        finally:
            await rec.aclose()
    finally:
        encoder.close()
        if client is not None:
            await client.aclose()
        await pool.close()


async def ask(rec: Recommender, user_id: str, **fields: Any) -> Served:
    """Serve one request with a generous deadline (tests assert behaviour, not speed)."""
    fields.setdefault("deadline_ms", 10_000)
    return await rec.recommend(RecRequest(user_id=user_id, **fields))
