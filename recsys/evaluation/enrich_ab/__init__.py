"""The enrichment A/B: raw-text vs LLM-enriched-text embeddings on a frozen MovieLens
query set, with recall@k / nDCG@k / MRR, bootstrap CIs per query kind, and an LLM judge
of justification quality when an endpoint is configured. No Kafka, no Postgres."""

from recsys.evaluation.enrich_ab.judge import JUDGE_PROMPT, JudgeItem, JudgeVerdict, judge_arm
from recsys.evaluation.enrich_ab.queries import (
    QUERY_SET_VERSION,
    AbQuery,
    QuerySet,
    QuerySetConfig,
    build_query_set,
    load_query_set,
)
from recsys.evaluation.enrich_ab.retrieval import bootstrap_delta, rank_items, score_ranking
from recsys.evaluation.enrich_ab.run import AbLlm, AbOptions, run_enrichment_ab

__all__ = [
    "JUDGE_PROMPT",
    "QUERY_SET_VERSION",
    "AbLlm",
    "AbOptions",
    "AbQuery",
    "JudgeItem",
    "JudgeVerdict",
    "QuerySet",
    "QuerySetConfig",
    "bootstrap_delta",
    "build_query_set",
    "judge_arm",
    "load_query_set",
    "rank_items",
    "run_enrichment_ab",
    "score_ranking",
]
