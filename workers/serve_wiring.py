"""Wiring the serving worker's recommender from settings (Postgres ports + LLM parts)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from recsys.cf.als_store import PgAls
from recsys.cf.pg_covisit import PgCovisitation
from recsys.cf.popularity import PgPopularity
from recsys.cf.profile import PgProfiles
from recsys.dialogue.engine import Dialogue, DialogueConfig
from recsys.dialogue.llm_reading import TurnReader
from recsys.dialogue.policy import PolicyConfig
from recsys.dialogue.store import PgConversations
from recsys.items.pgvector import PgItemStore
from recsys.llm.breaker import CircuitBreaker
from recsys.llm.client import LlmClient
from recsys.llm.prompts import PromptStyle
from recsys.serving.config import ServingConfig
from recsys.serving.explain_llm import LlmExplainer
from recsys.serving.guard import InjectionGuard
from recsys.serving.intent import IntentParser
from recsys.serving.item_cache import CachedItems, ItemCache
from recsys.serving.llm_gate import LlmGate
from recsys.serving.pg_ports import PgCf, PgItems, PgUsers
from recsys.serving.ports import ItemSource, QueryEmbedder
from recsys.serving.recommender import LlmParts, Recommender
from recsys.serving.rerank import LlmReranker
from recsys.serving.untrusted import Sanitiser
from recsys.textsafety.instruction import DEFAULT_THRESHOLD, InstructionScorer
from recsys.textsafety.margins import MarginStore, PgInstructionMargins
from recsys.users.store import PgUserStates
from streams.settings import Settings
from workers.bootstrap import Context

__all__ = [
    "build_dialogue",
    "build_recommender",
    "llm_client",
    "llm_client_for",
    "llm_parts",
    "sanitiser_for",
]


def llm_client(ctx: Context) -> tuple[LlmClient | None, str]:
    """The LLM client for serving, or None and the reason it is off."""
    if ctx.overrides.llm_client is not None:
        return ctx.overrides.llm_client, "no_endpoint"
    return llm_client_for(ctx.settings), "no_endpoint"


def llm_client_for(settings: Settings) -> LlmClient | None:
    """A client for the configured endpoint (None without one)."""
    return LlmClient.from_settings(settings.llm) if settings.llm_enabled else None


def sanitiser_for(
    settings: Any, embedder: QueryEmbedder | None, margins: MarginStore | None = None
) -> Sanitiser:
    """The guard, plus the instruction scorer on the query embedder's model when on
    (catalog margins shared through ``margins`` when given)."""
    scorer = None
    if settings.instruction_scoring and embedder is not None:
        threshold = settings.instruction_threshold
        scorer = InstructionScorer(
            embedder.embed_many,
            threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
            model=embedder.name,
            store=margins,
        )
    return Sanitiser(InjectionGuard(), scorer)


def llm_parts(
    settings: Any,
    client: LlmClient | None,
    embedder: QueryEmbedder | None = None,
    *,
    wait_for_scores: bool = False,
    margins: MarginStore | None = None,
) -> LlmParts:
    """Reranker, intent parser, explainer, their shared gate and text sanitiser.

    ``wait_for_scores`` makes every request wait for the instruction scores of new text
    (replays and tests, which must not depend on timing) instead of the settings' budget;
    ``margins`` shares catalog text's instruction margins between processes.
    """
    if client is None:
        return LlmParts()
    sanitiser = sanitiser_for(settings, embedder, margins)
    gate = LlmGate(
        CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_reset_s),
        tokens_per_min=settings.llm_budget_tokens_per_min,
        usd_per_min=settings.llm_budget_usd_per_min,
    )
    style: PromptStyle = settings.prompt_style
    return LlmParts(
        reranker=LlmReranker(
            client,
            cap=settings.rerank_cap,
            cache_size=settings.response_cache_size,
            sanitiser=sanitiser,
            max_displacement=settings.llm_max_displacement,
            flagged_displacement=settings.llm_flagged_displacement,
            weight=settings.llm_rerank_weight,
            scoring_budget_s=None if wait_for_scores else settings.instruction_budget_ms / 1000,
            prompt_style=style,
        ),
        intent=IntentParser(client, sanitiser=sanitiser, prompt_style=style),
        explainer=LlmExplainer(client),
        gate=gate,
        model=client.model,
        sanitiser=sanitiser,
    )


def build_recommender(
    settings: Settings,
    apool: AsyncConnectionPool,
    embedder: QueryEmbedder | None,
    client: LlmClient | None,
    item_cache: ItemCache | None = None,
    *,
    wait_for_scores: bool = False,
    **overrides: Any,
) -> Recommender:
    """The production recommender of this process (``overrides`` change the policy).

    ``item_cache`` keeps item details and vectors in memory; its owner must invalidate it
    from ``catalog.enriched`` (the serve worker does).
    """
    s = settings
    config = ServingConfig.from_settings(s, **overrides)
    items: ItemSource = PgItems(PgItemStore(apool, ef_search=s.hnsw_ef_search), config.space)
    if item_cache is not None:
        items = CachedItems(items, item_cache)
    return Recommender(
        items=items,
        users=PgUsers(
            PgUserStates(apool),
            profiles=PgProfiles(apool, limit=s.cf_profile_events) if s.cf_profile_events else None,
        ),
        cf=PgCf(
            PgAls(
                apool,
                cache_s=s.cf_cache_s,
                ef_search=max(100, s.hnsw_ef_search),
                factor_cache=s.serve_item_cache_size,
                session_ef_search=s.hnsw_ef_search,
            ),
            PgCovisitation(apool, half_life_h=s.covisit_half_life_h),
            PgPopularity(
                apool, half_life_h=s.popularity_half_life_h, max_age_s=s.popularity_max_age_s
            ),
        ),
        embedder=embedder,
        config=config,
        llm=llm_parts(
            s,
            client,
            embedder,
            wait_for_scores=wait_for_scores,
            margins=PgInstructionMargins(apool),
        ),
    )


def build_dialogue(
    settings: Settings,
    apool: AsyncConnectionPool,
    recommender: Recommender,
    client: LlmClient | None,
) -> Dialogue:
    """The conversation engine over the process's recommender (turns kept in Postgres)."""
    s = settings
    on = s.llm_dialogue and client is not None
    reader = TurnReader(
        client if on else None,
        sanitiser=recommender.sanitiser,
        off_reason="no_endpoint" if client is None else "disabled",
        prompt_style=s.prompt_style,
    )
    config = DialogueConfig(
        policy=PolicyConfig(
            min_signals=s.dialogue_min_signals,
            max_questions=s.dialogue_max_questions,
            min_information=s.dialogue_min_information,
        ),
        pool=s.dialogue_pool,
    )
    return Dialogue(recommender, PgConversations(apool), reader, config)
