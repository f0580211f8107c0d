"""Instruction-likeness of catalog text, scored when the enrich worker writes an item.

With the LLM on, the serve path screens every candidate's title and description with the
embedding-based instruction scorer before quoting them into a prompt
(:mod:`recsys.serving.untrusted`). Scored there, each serve process embeds the catalog's
sentences again after every start (≈ 45 to 70 ms of serve CPU per request while it does,
measured with ``benchmarks/serve.py``: docs/workers/serve.md). Scored here, once per item
version for the whole deployment, into ``instruction_margins``
(:mod:`recsys.textsafety.margins`), serving only reads them (preloaded at start). Text
the enrich worker did not score (the LLM was off then, or an older scorer) is still
scored by the serve path, once, and stored for everyone. The scoring itself:
:func:`recsys.serving.catalog_scores.score_catalog`.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from psycopg_pool import AsyncConnectionPool

from recsys.embedding import Embedder
from recsys.textsafety.instruction import DEFAULT_THRESHOLD, InstructionScorer
from recsys.textsafety.margins import PgInstructionMargins
from workers.bootstrap import Context

__all__ = ["catalog_scorer"]

log = logging.getLogger(__name__)


def catalog_scorer(
    ctx: Context, embedder: Embedder, pool: AsyncConnectionPool
) -> InstructionScorer | None:
    """The scorer serving would use (same model, exemplars, version), storing margins in
    Postgres — or None when serving would not score (no LLM, or scoring off)."""
    s = ctx.settings
    serving_llm = ctx.overrides.llm_client is not None or s.llm_enabled
    if not (serving_llm and s.instruction_scoring):
        return None

    async def embed(texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(embedder.embed, texts)

    threshold = s.instruction_threshold
    return InstructionScorer(
        embed,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        model=embedder.name,
        store=PgInstructionMargins(pool),
        chunk=64,
    )
